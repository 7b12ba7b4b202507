//! kube-reloader: rolls Deployments, StatefulSets and DaemonSets when the ConfigMaps and Secrets
//! they use change.
#![forbid(unsafe_code)]
