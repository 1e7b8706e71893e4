//! Tests of the portal layers: sessions, CSRF, cookies.
