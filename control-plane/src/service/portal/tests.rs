//! Tests of the portal accounts and sessions.
