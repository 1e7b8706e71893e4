//! Accounts and sessions: equal answers for unknown emails, throttling, disabled accounts,
//! expiry, hashed storage.

use axum::http::StatusCode;
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

/// Ada signs up (and in).
async fn sign_up(state: &AppState) -> NewSession {
    state
        .portal()
        .sign_up(sign_up_input("ada@example.com"))
        .await
        .unwrap()
}

/// Ada logs in with her password.
async fn log_in(state: &AppState) -> NewSession {
    state
        .portal()
        .log_in(log_in_input("ada@example.com", PASSWORD), None)
        .await
        .unwrap()
}

/// The session is over: 401 `unauthenticated`.
fn assert_over(state: &AppState, session: &NewSession) {
    assert!(matches!(
        state.portal().session(session.id.expose()),
        Err(ApiError::Unauthenticated)
    ));
}

fn state() -> (AppState, std::sync::Arc<FakeClock>, tempfile::TempDir) {
    let (state, _store, clock, dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    (state, clock, dir)
}

#[tokio::test]
async fn sign_up_opens_a_session_stored_only_as_a_digest() {
    let (state, _clock, _dir) = state();
    let session = sign_up(&state).await;
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
    sign_up(&state).await;
    let wrong = state
        .portal()
        .log_in(log_in_input("ada@example.com", "not the password"), None)
        .await
        .unwrap_err();
    let unknown = state
        .portal()
        .log_in(log_in_input("bob@example.com", PASSWORD), None)
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
        .log_in(log_in_input("ADA@example.com", PASSWORD), None)
        .await
        .unwrap();
    assert_eq!(session.developer.email, "ada@example.com");
}

#[tokio::test]
async fn repeated_failures_are_delayed_more_and_more_and_a_success_resets_them() {
    let (state, clock, _dir) = state();
    sign_up(&state).await;
    let attempt = |password: &'static str| {
        let state = state.clone();
        async move {
            state
                .portal()
                .log_in(log_in_input("ada@example.com", password), None)
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
}

#[tokio::test]
async fn unknown_emails_are_throttled_too() {
    let (state, _clock, _dir) = state();
    for _ in 0..FREE_FAILURES {
        state
            .portal()
            .log_in(log_in_input("nobody@example.com", PASSWORD), None)
            .await
            .unwrap_err();
    }
    let error = state
        .portal()
        .log_in(log_in_input("Nobody@example.com", PASSWORD), None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "too_many_attempts");
}

#[tokio::test]
async fn disabled_developers_cannot_log_in_and_their_sessions_stop_working() {
    let (state, _clock, _dir) = state();
    let session = sign_up(&state).await;
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
    assert_over(&state, &session);
    assert!(matches!(
        state
            .portal()
            .log_in(log_in_input("ada@example.com", PASSWORD), None)
            .await,
        Err(ApiError::AccountDisabled)
    ));
    let wrong = state
        .portal()
        .log_in(log_in_input("ada@example.com", "not the password"), None)
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
    let first = sign_up(&state).await;
    let second = log_in(&state).await;
    state.portal().log_out(second.id.expose()).unwrap();
    assert!(state.portal().session(second.id.expose()).is_err());
    state.portal().session(first.id.expose()).unwrap();
    clock.advance(SESSION_LIFETIME);
    assert_over(&state, &first);
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

#[tokio::test]
async fn concurrent_guesses_against_a_locked_account_are_refused_before_any_password_check() {
    let (state, _clock, _dir) = state();
    sign_up(&state).await;
    for _ in 0..FREE_FAILURES {
        state
            .portal()
            .log_in(log_in_input("ada@example.com", "wrong password!"), None)
            .await
            .unwrap_err();
    }
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..50 {
        let state = state.clone();
        let password = if i == 49 { PASSWORD } else { "wrong password!" };
        guesses.spawn(async move {
            state
                .portal()
                .log_in(log_in_input("ada@example.com", password), None)
                .await
        });
    }
    let answers = guesses.join_all().await;
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Err(ApiError::TooManyAttempts { .. }))),
        "{answers:?}"
    );
}

#[tokio::test]
async fn concurrent_guesses_on_a_fresh_account_check_at_most_the_free_attempts() {
    let (state, _clock, _dir) = state();
    sign_up(&state).await;
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let state = state.clone();
        guesses.spawn(async move {
            state
                .portal()
                .log_in(log_in_input("ada@example.com", "wrong password!"), None)
                .await
                .unwrap_err()
                .code()
        });
    }
    let codes = guesses.join_all().await;
    let checked = codes
        .iter()
        .filter(|code| **code == "invalid_credentials")
        .count();
    assert_eq!(checked, FREE_FAILURES as usize, "{codes:?}");
}

#[tokio::test]
async fn one_address_guessing_many_emails_is_throttled() {
    let (state, _clock, _dir) = state();
    let address = Some(std::net::IpAddr::from([192, 0, 2, 7]));
    for i in 0..FREE_ADDRESS_FAILURES {
        let error = state
            .portal()
            .log_in(
                log_in_input(&format!("user{i}@example.com"), PASSWORD),
                address,
            )
            .await
            .unwrap_err();
        assert_eq!(error.code(), "invalid_credentials");
    }
    let error = state
        .portal()
        .log_in(log_in_input("someone-else@example.com", PASSWORD), address)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "too_many_attempts");
    let other = Some(std::net::IpAddr::from([192, 0, 2, 8]));
    let error = state
        .portal()
        .log_in(log_in_input("someone-else@example.com", PASSWORD), other)
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        "invalid_credentials",
        "another address may try"
    );
}

#[tokio::test]
async fn an_oversized_email_is_refused_without_touching_the_throttle() {
    let (state, _clock, _dir) = state();
    let email = format!("{}@example.com", "a".repeat(1_000_000));
    let error = state
        .portal()
        .log_in(log_in_input(&email, PASSWORD), None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_credentials");
    assert!(state.portal_runtime().emails.is_empty());
}

#[tokio::test]
async fn a_password_reset_ends_every_session_for_good() {
    let (state, _clock, _dir) = state();
    let first = sign_up(&state).await;
    let second = log_in(&state).await;
    state
        .developers()
        .reset_password(
            &ops(),
            &first.developer.id,
            &Precondition::Missing,
            PasswordReset {
                password: Secret::new("a brand new passphrase"),
            },
        )
        .await
        .unwrap();
    for session in [&first, &second] {
        assert_over(&state, session);
    }
}

#[tokio::test]
async fn a_session_from_before_a_disable_stays_over_after_re_enabling() {
    let (state, _clock, _dir) = state();
    let session = sign_up(&state).await;
    for developer_state in [DeveloperState::Disabled, DeveloperState::Active] {
        state
            .developers()
            .set_state(
                &ops(),
                &session.developer.id,
                &Precondition::Missing,
                developer_state,
            )
            .await
            .unwrap();
    }
    assert_over(&state, &session);
    log_in(&state).await;
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_and_opens_a_new_one() {
    let (state, _clock, _dir) = state();
    let first = sign_up(&state).await;
    let wrong = state
        .portal()
        .change_password(
            &first.developer,
            PasswordChange {
                current_password: Secret::new("not my password"),
                new_password: Secret::new("a brand new passphrase"),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, ApiError::InvalidRequest { field: Some(ref f), .. } if f == "current_password")
    );
    let fresh = state
        .portal()
        .change_password(
            &first.developer,
            PasswordChange {
                current_password: Secret::new(PASSWORD),
                new_password: Secret::new("a brand new passphrase"),
            },
        )
        .await
        .unwrap();
    assert!(state.portal().session(first.id.expose()).is_err());
    state.portal().session(fresh.id.expose()).unwrap();
    state
        .portal()
        .log_in(
            log_in_input("ada@example.com", "a brand new passphrase"),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_idle_session_ends_and_a_used_one_lives_on() {
    let (state, clock, _dir) = state();
    let idle = sign_up(&state).await;
    let used = log_in(&state).await;
    for _ in 0..3 {
        clock.advance(SESSION_IDLE_TIMEOUT / 2);
        state.portal().session(used.id.expose()).unwrap();
    }
    assert_over(&state, &idle);
}

#[tokio::test]
async fn a_developer_has_at_most_the_cap_of_sessions_and_the_least_recent_goes() {
    let (state, clock, _dir) = state();
    let first = sign_up(&state).await;
    let mut sessions = Vec::new();
    for _ in 0..MAX_SESSIONS_PER_DEVELOPER {
        clock.advance(Duration::from_secs(1));
        sessions.push(
            state
                .portal()
                .log_in(log_in_input("ada@example.com", PASSWORD), None)
                .await
                .unwrap(),
        );
    }
    assert!(state.portal().session(first.id.expose()).is_err());
    for session in &sessions {
        state.portal().session(session.id.expose()).unwrap();
    }
    let indexed = state
        .store()
        .scan(Tree::DeveloperSessions, None, Order::Ascending)
        .count();
    assert_eq!(indexed, MAX_SESSIONS_PER_DEVELOPER);
}

#[tokio::test]
async fn with_self_sign_up_off_only_operators_create_developers() {
    let (state, _clock, _dir) = state();
    state
        .portal()
        .put_settings(
            &ops(),
            &Precondition::Any,
            PortalSettings { self_signup: false },
        )
        .await
        .unwrap();
    assert!(matches!(
        state
            .portal()
            .sign_up(sign_up_input("ada@example.com"))
            .await,
        Err(ApiError::SignupDisabled)
    ));
    assert!(!state.portal().settings().unwrap().value.self_signup);
}

#[tokio::test]
async fn a_log_in_beyond_the_hashing_queue_is_shed_without_being_counted() {
    let (state, _clock, _dir) = state();
    sign_up(&state).await;
    // A flood holds every place in the hashing queue.
    let flood: Vec<_> = std::iter::from_fn(|| state.hasher().reserve().ok()).collect();
    assert!(!flood.is_empty());
    for _ in 0..=FREE_FAILURES {
        let error = state
            .portal()
            .log_in(log_in_input("ada@example.com", "wrong password!"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApiError::LoginBusy { retry_after: 1 }),
            "{error:?}"
        );
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // The flood ends: the shed attempts were not counted, so the right password gets in.
    drop(flood);
    state
        .portal()
        .log_in(log_in_input("ada@example.com", PASSWORD), None)
        .await
        .expect("signed in");
}
