//! TCP L4 proxy to the healthy kube-apiservers.
