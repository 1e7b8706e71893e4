//! Portico core placeholder.
