//! Health checks of the kube-apiservers.
