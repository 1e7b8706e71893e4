//! Portico filter placeholder.
