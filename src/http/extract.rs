//! Reading requests: the bearer token, the refresh cookie, and JSON bodies under the 16 KiB
//! limit. Tokens are only ever taken from headers, never from the query string.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use hyper::{HeaderMap, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::respond::REFRESH_COOKIE;

/// Largest request body accepted.
pub(crate) const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The bearer token of the `Authorization` header (RFC 6750 §2.1; the scheme name is
/// case-insensitive). No header, or another scheme, is "no credentials"; a malformed or
/// repeated header is an invalid token.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::no_credentials());
    };
    if values.next().is_some() {
        return Err(ApiError::invalid_token());
    }
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::no_credentials());
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(ApiError::invalid_token());
    }
    Ok(token)
}

/// The refresh token from the `refresh_token` cookie, if any.
pub(crate) fn refresh_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The raw body, refused with 413 past `BODY_LIMIT_BYTES` without reading the rest.
pub(crate) async fn body(req: Request<Incoming>) -> Result<hyper::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT_BYTES as u64) {
        return Err(ApiError::payload_too_large());
    }
    let limited = Limited::new(req.into_body(), BODY_LIMIT_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large())
        }
        Err(_) => Err(ApiError::invalid_request("could not read the request body")),
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON body of type `T`: 415-free by design, a wrong content type is a 400 like any other
/// malformed request.
pub(crate) async fn json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::invalid_request(
            "content-type must be application/json",
        ));
    }
    let bytes = body(req).await?;
    parse_json(&bytes)
}

/// Parses a JSON body, describing the problem without echoing the input. The body must be a
/// JSON object: serde's derived structs would also take a positional array.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::invalid_request("request body is not valid JSON"))?;
    if !value.is_object() {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|_| {
        ApiError::invalid_request("request body has a missing, unknown or mistyped field")
    })
}
