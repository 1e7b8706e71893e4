//! Tests of the registration flow.
