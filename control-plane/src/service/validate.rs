//! Field validation shared by the services. Each check names the field at fault, as a path
//! such as `access_rights[0].api`, in the 400 it returns.

use std::collections::HashSet;
use std::hash::Hash;

use crate::error::ApiError;

/// The longest name accepted.
pub const MAX_NAME_LEN: usize = 200;
/// The longest free text (descriptions) accepted.
pub const MAX_TEXT_LEN: usize = 10_000;
/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The most items accepted in one list field.
pub const MAX_LIST_LEN: usize = 100;

/// Whether `value` is an operator-chosen id: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_slug(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// An operator-chosen id.
pub(crate) fn slug(field: &str, value: &str) -> Result<(), ApiError> {
    if is_slug(value) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "`{value}` is not a valid id: use 1 to 64 lower-case letters, digits, `-` or `_`, \
                 starting with a letter or digit"
            ),
        ))
    }
}

/// The id of a resource being created: required, a slug.
pub(crate) fn new_id(id: Option<&str>) -> Result<String, ApiError> {
    let id = id.ok_or_else(|| ApiError::invalid("id", "the id is required"))?;
    slug("id", id)?;
    Ok(id.to_owned())
}

/// The id in an update body, if given, must be the id in the path.
pub(crate) fn same_id(path_id: &str, body_id: Option<&str>) -> Result<(), ApiError> {
    match body_id {
        Some(body_id) if body_id != path_id => Err(ApiError::invalid(
            "id",
            format!(
                "the id `{body_id}` does not match the id `{path_id}` in the path; ids cannot be changed"
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether `c` is a character that hides or reorders text: a control character, a bidi
/// embedding, override or isolate (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C), or
/// a zero-width or invisible character (U+200B–U+200D, U+2060–U+2064, U+FEFF, U+180E, U+00AD).
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'..='\u{2064}'
                | '\u{061C}'
                | '\u{FEFF}'
                | '\u{180E}'
                | '\u{00AD}'
        )
}

/// A one-line human name: trimmed, 1 to [`MAX_NAME_LEN`] characters, none of them
/// [deceptive](is_deceptive) (control, bidi-override or zero-width characters).
pub(crate) fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    if value.chars().any(is_deceptive) {
        return Err(ApiError::invalid(
            field,
            "must not contain control, bidi-override or zero-width characters",
        ));
    }
    Ok(value.to_owned())
}

/// Free text up to `max` characters (may be empty).
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// A short token without whitespace (a claim name, a grant type, a scope value...): core's
/// [`portico_core::rules::token_text`].
pub(crate) fn token(field: &str, value: &str) -> Result<(), ApiError> {
    rule(field, portico_core::rules::token_text(value))
}

/// An absolute `http` or `https` URL without a fragment. Returned exactly as given, since
/// some of these (an issuer) are compared byte for byte with what an IdP sends.
pub(crate) fn http_url(field: &str, value: &str) -> Result<String, ApiError> {
    if value.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let url = url::Url::parse(value)
        .map_err(|error| ApiError::invalid(field, format!("`{value}` is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::invalid(
            field,
            "must be an absolute http or https URL",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::invalid(
            field,
            "must not contain a fragment (#...)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(field, "must not contain credentials"));
    }
    Ok(value.to_owned())
}

/// A value checked by one of core's rules ([`portico_core::rules`]), with the violation
/// reported against `field` (400 `invalid_request`).
pub(crate) fn rule<T>(
    field: &str,
    result: Result<T, portico_core::rules::RuleViolation>,
) -> Result<T, ApiError> {
    result.map_err(|violation| ApiError::invalid(field, violation.0))
}

/// At least one item.
pub(crate) fn non_empty<T>(field: &str, items: &[T]) -> Result<(), ApiError> {
    if items.is_empty() {
        Err(ApiError::invalid(field, "must contain at least one item"))
    } else {
        Ok(())
    }
}

/// At most [`MAX_LIST_LEN`] items, none repeated.
pub(crate) fn distinct<T: Eq + Hash>(field: &str, items: &[T]) -> Result<(), ApiError> {
    if items.len() > MAX_LIST_LEN {
        return Err(ApiError::invalid(
            field,
            format!("must contain at most {MAX_LIST_LEN} items"),
        ));
    }
    let mut seen = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        if !seen.insert(item) {
            return Err(ApiError::invalid(
                format!("{field}[{index}]"),
                "repeats an earlier item",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::InvalidRequest { field, .. } => field.unwrap_or_default(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn slugs_are_lower_case_and_bounded() {
        assert!(is_slug("orders"));
        assert!(is_slug("0rders_v2-beta"));
        assert!(!is_slug(""));
        assert!(!is_slug("-orders"));
        assert!(!is_slug("Orders"));
        assert!(!is_slug("orders/v2"));
        assert!(is_slug(&"a".repeat(64)));
        assert!(!is_slug(&"a".repeat(65)));
    }

    #[test]
    fn urls_must_be_absolute_http_without_fragment_or_credentials() {
        assert_eq!(
            http_url("u", "https://idp.example.com").unwrap(),
            "https://idp.example.com"
        );
        assert!(http_url("u", "http://127.0.0.1:9000/realms/x").is_ok());
        assert!(http_url("u", "ftp://example.com").is_err());
        assert!(http_url("u", "/relative").is_err());
        assert!(http_url("u", "https://example.com/#frag").is_err());
        assert_eq!(
            field_of(http_url("doc", "https://user:pw@example.com").unwrap_err()),
            "doc"
        );
    }

    #[test]
    fn core_rule_violations_name_the_field() {
        let error = rule("hosts[2]", portico_core::rules::host("exa mple.com")).unwrap_err();
        assert_eq!(field_of(error), "hosts[2]");
    }

    #[test]
    fn distinct_names_the_repeated_index() {
        assert!(distinct("l", &["a", "b"]).is_ok());
        assert_eq!(
            field_of(distinct("l", &["a", "b", "a"]).unwrap_err()),
            "l[2]"
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("n", "  Orders ").unwrap(), "Orders");
        assert!(name("n", "   ").is_err());
        assert!(name("n", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(name("n", "a\nb").is_err());
        assert!(name("n", "evil\u{202E}gnp.exe").is_err());
        assert!(name("n", "in\u{200B}visible").is_err());
        assert!(name("n", "\u{2066}isolate").is_err());
        assert_eq!(name("n", "Zoë's café").unwrap(), "Zoë's café");
    }
}
