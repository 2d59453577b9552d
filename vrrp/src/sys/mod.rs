//! Linux I/O for VRRP.
