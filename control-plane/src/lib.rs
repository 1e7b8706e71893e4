//! Portico control plane placeholder.
