//! Extractors that answer every bad input with our JSON error shape (never axum's plain-text
//! rejections), naming the field at fault where there is one.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::service::api_docs::document::{DocumentFormat, essence};
use crate::service::{Actor, AppState, Precondition};

/// A JSON body: `Content-Type: application/json` (else 415), within the body limit (else
/// 413), valid JSON (else 400 `malformed_json`) of the expected shape, with no unknown fields
/// (else 400 `invalid_request` naming the field).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// An OpenAPI document as a body: `Content-Type` JSON or YAML (else 415
/// `unsupported_media_type`), within the body limit (else 413). The bytes are not parsed here.
#[derive(Debug, Clone)]
pub struct DocumentBody {
    /// The format the `Content-Type` names.
    pub format: DocumentFormat,
    /// The body as sent.
    pub bytes: Bytes,
}

impl FromRequest<AppState> for DocumentBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let format = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(DocumentFormat::from_content_type)
            .ok_or(ApiError::UnsupportedDocumentType)?;
        let bytes = read_body(request, state).await?;
        Ok(DocumentBody { format, bytes })
    }
}

/// The whole body, or 413 beyond the body limit.
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.settings().body_limit,
                }
            } else {
                ApiError::InvalidRequest {
                    field: None,
                    message: format!("the request body could not be read: {rejection}"),
                }
            }
        })
}

/// Whether the request says `Content-Type: application/json` (or another `+json` type).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = essence(content_type);
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses JSON, telling syntax errors (checked first, on the whole body) from shape errors, and
/// naming the field of the latter.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        shape_error(&path, &error.into_inner().to_string())
    })
}

/// A 400 naming the field: the path to it, with the name of a missing or unknown field
/// appended (serde reports those at the enclosing object, or at the field itself). The name is
/// whatever JSON key the body used, so it may be empty or hold backticks: it ends at the
/// message's closing backtick, and the path already names it only when its last segment is
/// the name, not when it merely ends with it.
fn shape_error(path: &str, message: &str) -> ApiError {
    let path = if path == "." { "" } else { path };
    let field = match field_name(message) {
        Some(name) if path.is_empty() => Some(name.to_owned()),
        Some(name) if path == name || path.ends_with(&format!(".{name}")) => Some(path.to_owned()),
        Some(name) => Some(format!("{path}.{name}")),
        None if path.is_empty() => None,
        None => Some(path.to_owned()),
    };
    ApiError::InvalidRequest {
        field,
        message: message.to_owned(),
    }
}

/// The field a serde "missing field `x`" or "unknown field `x`, expected …" message names.
fn field_name(message: &str) -> Option<&str> {
    if let Some(rest) = message.strip_prefix("missing field `") {
        return rest.rfind('`').map(|at| &rest[..at]);
    }
    let rest = message.strip_prefix("unknown field `")?;
    ["`, expected ", "`, there are no fields"]
        .iter()
        .find_map(|end| rest.find(end).map(|at| &rest[..at]))
        .or_else(|| rest.rfind('`').map(|at| &rest[..at]))
}

/// Query parameters; an unknown or bad parameter is a 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                shape_error(&path, &format!("{message} (query string)"))
            })
    }
}

/// Path parameters, with rejections in our error shape.
#[derive(Debug, Clone, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The `If-Match` header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatch(pub Precondition);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let values: Vec<&str> = parts
            .headers
            .get_all(header::IF_MATCH)
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| ApiError::invalid("If-Match", "the If-Match header is not ASCII"))
            })
            .collect::<Result<_, _>>()?;
        if values.is_empty() {
            return Ok(IfMatch(Precondition::Missing));
        }
        let mut tags = Vec::new();
        for tag in values.iter().flat_map(|value| value.split(',')) {
            let tag = tag.trim();
            if tag == "*" {
                return Ok(IfMatch(Precondition::Any));
            }
            let valid = tag.len() >= 2
                && tag.starts_with('"')
                && tag.ends_with('"')
                && !tag[1..tag.len() - 1].contains('"');
            let weak = tag.starts_with("W/\"") && tag.ends_with('"');
            if weak {
                // A weak tag never matches under If-Match's strong comparison.
                continue;
            }
            if !valid {
                return Err(ApiError::invalid(
                    "If-Match",
                    format!(
                        "`{tag}` is not an entity tag; send the ETag as received, e.g. \"42\", or *"
                    ),
                ));
            }
            tags.push(tag.to_owned());
        }
        Ok(IfMatch(Precondition::Etags(tags)))
    }
}

/// The authenticated operator, put in the request by [`super::admin::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .map(Operator)
            .ok_or(ApiError::Unauthorized)
    }
}

/// The client's address: the TCP peer of the connection (`None` where the server runs
/// without connection info, as in `oneshot` tests). Behind a reverse proxy this is the
/// proxy's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields are only deserialized")]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields are only deserialized")]
    struct Inner {
        api: String,
        #[serde(default)]
        count: u32,
    }

    fn field(result: Result<Outer, ApiError>) -> Option<String> {
        match result.unwrap_err() {
            ApiError::InvalidRequest { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            field(parse_json(br#"{"items": []}"#)),
            Some("name".to_owned())
        );
        assert_eq!(
            field(parse_json(br#"{"name": "x", "items": [], "extra": 1}"#)),
            Some("extra".to_owned())
        );
        assert_eq!(
            field(parse_json(
                br#"{"name": "x", "items": [{"api": "a", "bogus": 1}]}"#
            )),
            Some("items[0].bogus".to_owned())
        );
        assert_eq!(
            field(parse_json(
                br#"{"name": "x", "items": [{"api": "a", "count": "many"}]}"#
            )),
            Some("items[0].count".to_owned())
        );
        assert_eq!(
            field(parse_json(br#"{"name": "x", "items": [{}]}"#)),
            Some("items[0].api".to_owned())
        );
    }

    /// Found by the `control_plane_bodies` fuzz target: the field is named from serde's message
    /// text, which dropped an empty key, cut a key at a backtick and took a key that ends the
    /// path's last segment (`]` after `items[0]`) for that segment.
    #[test]
    fn json_errors_name_unknown_fields_with_any_key() {
        assert_eq!(
            field(parse_json(br#"{"": 1, "name": "x", "items": []}"#)),
            Some(String::new())
        );
        assert_eq!(
            field(parse_json(br#"{"name": "x", "items": [], "a`b, c": 1}"#)),
            Some("a`b, c".to_owned())
        );
        assert_eq!(
            field(parse_json(
                br#"{"name": "x", "items": [{"api": "a", "]": 1}]}"#
            )),
            Some("items[0].]".to_owned())
        );
        assert_eq!(
            field(parse_json(
                br#"{"name": "x", "items": [{"api": "a", "": 1}]}"#
            )),
            Some("items[0].".to_owned())
        );
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(
            parse_json::<Outer>(b"{\"name\": "),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(b"not json"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(br#"{"name": "x", "items": []} trailing"#),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[tokio::test]
    async fn if_match_parses_tags_star_and_rejects_garbage() {
        async fn parse(value: Option<&str>) -> Result<IfMatch, ApiError> {
            let mut builder = axum::http::Request::builder();
            if let Some(value) = value {
                builder = builder.header(header::IF_MATCH, value);
            }
            let (mut parts, ()) = builder.body(()).unwrap().into_parts();
            IfMatch::from_request_parts(&mut parts, &()).await
        }
        assert_eq!(parse(None).await.unwrap().0, Precondition::Missing);
        assert_eq!(parse(Some("*")).await.unwrap().0, Precondition::Any);
        assert_eq!(
            parse(Some("\"1\", W/\"2\", \"3\"")).await.unwrap().0,
            Precondition::Etags(vec!["\"1\"".to_owned(), "\"3\"".to_owned()])
        );
        assert!(parse(Some("42")).await.is_err());
    }
}
