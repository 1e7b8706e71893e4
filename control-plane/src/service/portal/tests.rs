//! Accounts and sessions: equal answers for unknown emails, throttling, disabled accounts,
//! expiry, hashed storage.

use std::time::Duration;

use super::*;
use crate::idp::HttpTimeouts;
use crate::service::Precondition;
use crate::service::test_support::{FakeClock, flaky_state, ops};

const PASSWORD: &str = "correct horse battery";

fn sign_up_input(email: &str) -> SignUp {
    SignUp {
        email: email.to_owned(),
        name: "Ada".to_owned(),
        password: Secret::new(PASSWORD),
    }
}

fn log_in_input(email: &str, password: &str) -> LogIn {
    LogIn {
        email: email.to_owned(),
        password: Secret::new(password),
    }
}

fn state() -> (AppState, std::sync::Arc<FakeClock>, tempfile::TempDir) {
    let (state, _store, clock, dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    (state, clock, dir)
}

#[tokio::test]
async fn sign_up_opens_a_session_stored_only_as_a_digest() {
    let (state, _clock, _dir) = state();
    let session = state
        .portal()
        .sign_up(sign_up_input("ada@example.com"))
        .await
        .unwrap();
    assert_eq!(session.developer.email, "ada@example.com");
    assert_eq!(session.max_age, SESSION_LIFETIME);
    let developer = state.portal().session(session.id.expose()).unwrap();
    assert_eq!(developer.id, session.developer.id);
    let stored: Vec<_> = state
        .store()
        .scan(Tree::Sessions, None, Order::Ascending)
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, session_key(session.id.expose()));
    assert!(!String::from_utf8_lossy(&stored[0].1).contains(session.id.expose()));
    assert_eq!(
        state.revision().unwrap(),
        1,
        "sessions do not bump the revision"
    );
}

#[tokio::test]
async fn the_password_may_be_neither_short_nor_the_email() {
    let (state, _clock, _dir) = state();
    let short = SignUp {
        password: Secret::new("too short"),
        ..sign_up_input("ada@example.com")
    };
    assert!(matches!(
        state.portal().sign_up(short).await,
        Err(ApiError::InvalidRequest { field: Some(field), .. }) if field == "password"
    ));
    let same = SignUp {
        password: Secret::new("Ada@Example.com"),
        ..sign_up_input("ada@example.com")
    };
    assert!(matches!(
        state.portal().sign_up(same).await,
        Err(ApiError::InvalidRequest { field: Some(field), .. }) if field == "password"
    ));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let (state, _clock, _dir) = state();
    state
        .portal()
        .sign_up(sign_up_input("ada@example.com"))
        .await
        .unwrap();
    let wrong = state
        .portal()
        .log_in(log_in_input("ada@example.com", "not the password"))
        .await
        .unwrap_err();
    let unknown = state
        .portal()
        .log_in(log_in_input("bob@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(wrong.body().message, unknown.body().message);
    assert_eq!(
        (wrong.status(), wrong.code()),
        (unknown.status(), unknown.code())
    );
    assert_eq!(wrong.code(), "invalid_credentials");
    let session = state
        .portal()
        .log_in(log_in_input("ADA@example.com", PASSWORD))
        .await
        .unwrap();
    assert_eq!(session.developer.email, "ada@example.com");
}

#[tokio::test]
async fn repeated_failures_are_delayed_more_and_more_and_a_success_resets_them() {
    let (state, clock, _dir) = state();
    state
        .portal()
        .sign_up(sign_up_input("ada@example.com"))
        .await
        .unwrap();
    let attempt = |password: &'static str| {
        let state = state.clone();
        async move {
            state
                .portal()
                .log_in(log_in_input("ada@example.com", password))
                .await
        }
    };
    for _ in 0..FREE_FAILURES {
        assert_eq!(
            attempt("wrong password!").await.unwrap_err().code(),
            "invalid_credentials"
        );
    }
    // The fifth failure imposes 1 s; even the right password waits.
    let throttled = attempt(PASSWORD).await.unwrap_err();
    assert!(
        matches!(throttled, ApiError::TooManyAttempts { retry_after: 1 }),
        "{throttled:?}"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        attempt("wrong password!").await.unwrap_err().code(),
        "invalid_credentials"
    );
    assert!(matches!(
        attempt(PASSWORD).await.unwrap_err(),
        ApiError::TooManyAttempts { retry_after: 2 }
    ));
    clock.advance(Duration::from_secs(2));
    attempt(PASSWORD).await.unwrap();
    assert_eq!(
        attempt("wrong password!").await.unwrap_err().code(),
        "invalid_credentials"
    );
    assert_eq!(
        attempt("wrong password!").await.unwrap_err().code(),
        "invalid_credentials",
        "the success reset the count"
    );
    assert_eq!(lockout(FREE_FAILURES + 30), MAX_LOCKOUT);
}

#[tokio::test]
async fn unknown_emails_are_throttled_too() {
    let (state, _clock, _dir) = state();
    for _ in 0..FREE_FAILURES {
        state
            .portal()
            .log_in(log_in_input("nobody@example.com", PASSWORD))
            .await
            .unwrap_err();
    }
    let error = state
        .portal()
        .log_in(log_in_input("Nobody@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "too_many_attempts");
}

#[tokio::test]
async fn disabled_developers_cannot_log_in_and_their_sessions_stop_working() {
    let (state, _clock, _dir) = state();
    let session = state
        .portal()
        .sign_up(sign_up_input("ada@example.com"))
        .await
        .unwrap();
    state
        .developers()
        .set_state(
            &ops(),
            &session.developer.id,
            &Precondition::Missing,
            DeveloperState::Disabled,
        )
        .await
        .unwrap();
    assert!(matches!(
        state.portal().session(session.id.expose()),
        Err(ApiError::Unauthenticated)
    ));
    assert!(matches!(
        state
            .portal()
            .log_in(log_in_input("ada@example.com", PASSWORD))
            .await,
        Err(ApiError::AccountDisabled)
    ));
    let wrong = state
        .portal()
        .log_in(log_in_input("ada@example.com", "not the password"))
        .await
        .unwrap_err();
    assert_eq!(
        wrong.code(),
        "invalid_credentials",
        "no hint without the password"
    );
}

#[tokio::test]
async fn sessions_expire_and_log_out_ends_them() {
    let (state, clock, _dir) = state();
    let first = state
        .portal()
        .sign_up(sign_up_input("ada@example.com"))
        .await
        .unwrap();
    let second = state
        .portal()
        .log_in(log_in_input("ada@example.com", PASSWORD))
        .await
        .unwrap();
    state.portal().log_out(second.id.expose()).unwrap();
    assert!(state.portal().session(second.id.expose()).is_err());
    state.portal().session(first.id.expose()).unwrap();
    clock.advance(SESSION_LIFETIME);
    assert!(matches!(
        state.portal().session(first.id.expose()),
        Err(ApiError::Unauthenticated)
    ));
    assert_eq!(
        state
            .store()
            .scan(Tree::Sessions, None, Order::Ascending)
            .count(),
        0,
        "the expired session was removed when met"
    );
    assert!(state.portal().session("never-issued").is_err());
}
