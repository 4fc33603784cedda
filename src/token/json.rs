//! A small, strict JSON reader for the fixed JOSE header and claim set.
//!
//! Why not `serde_json`: its `Map` silently keeps the last of two members with the same name, so
//! `{"alg":"HS256","alg":"none"}` would need a second pass to refuse; and a derive over the
//! payload costs more than the HMAC itself. This reader walks one object, hands out its members
//! one at a time without allocating (keys borrow the input unless they contain escapes), and
//! refuses anything RFC 8259 refuses: invalid UTF-8, control characters in strings, bad escapes,
//! lone surrogates, leading zeros, trailing bytes. Nesting is capped at `MAX_DEPTH`.
//! Duplicate detection is the caller's job for the names it knows (a bitmask) and
//! [`Object::unknown_key`]'s for all others.

#![allow(clippy::arithmetic_side_effects)] // positions only grow, and stay below the input length (< 8 KiB)

use std::borrow::Cow;

/// How deep arrays and objects may nest inside a header or payload.
const MAX_DEPTH: usize = 16;

/// Malformed JSON, or a JSON value that is not an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not RFC 8259 JSON, or not an object at the top.
    Malformed,
    /// A member name occurs twice in one object.
    Duplicate,
}

/// One JSON value, as far as the claim checks need to tell values apart.
#[derive(Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Str(Cow<'a, str>),
    /// An integer literal (no fraction, no exponent) that fits `i64`.
    Int(i64),
    /// Any other number: fractional, exponent form, or out of `i64` range.
    OtherNumber,
    /// `true`, `false` or `null`.
    Literal,
    /// An array whose elements are all strings.
    StrArray(Vec<Cow<'a, str>>),
    /// Any other array, or an object (both already checked to be well formed).
    Compound,
}

/// A cursor over the members of one top-level JSON object.
pub(crate) struct Object<'a> {
    text: &'a str,
    pos: usize,
    first: bool,
    /// Names of members the caller did not recognise, kept only to find duplicates among them.
    unknown: Vec<Cow<'a, str>>,
}

impl<'a> Object<'a> {
    /// Starts reading `bytes`, which must be UTF-8 holding one JSON object.
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Malformed)?;
        let mut obj = Self {
            text,
            pos: 0,
            first: true,
            unknown: Vec::new(),
        };
        obj.skip_ws();
        obj.expect(b'{')?;
        Ok(obj)
    }

    /// The next member's name, or `None` after the closing brace (and only whitespace after it).
    pub(crate) fn next_key(&mut self) -> Result<Option<Cow<'a, str>>, JsonError> {
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.skip_ws();
            return if self.pos == self.text.len() {
                Ok(None)
            } else {
                Err(JsonError::Malformed)
            };
        }
        if !self.first {
            self.expect(b',')?;
            self.skip_ws();
        }
        self.first = false;
        let key = self.string()?;
        self.skip_ws();
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// The value of the member whose name `next_key` just returned.
    pub(crate) fn value(&mut self) -> Result<Value<'a>, JsonError> {
        self.skip_ws();
        match self.peek().ok_or(JsonError::Malformed)? {
            b'"' => Ok(Value::Str(self.string()?)),
            b'[' => self.array(),
            b'{' => {
                self.skip_object(1)?;
                Ok(Value::Compound)
            }
            b't' | b'f' | b'n' => {
                self.literal()?;
                Ok(Value::Literal)
            }
            _ => self.number(),
        }
    }

    /// Reads and discards the value of a member the caller does not know, refusing a second
    /// unknown member of the same name.
    pub(crate) fn unknown_key(&mut self, key: Cow<'a, str>) -> Result<(), JsonError> {
        if self.unknown.contains(&key) {
            return Err(JsonError::Duplicate);
        }
        self.unknown.push(key);
        self.value().map(drop)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Malformed)
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self) -> Result<(), JsonError> {
        let rest = self.text.get(self.pos..).ok_or(JsonError::Malformed)?;
        for word in ["true", "false", "null"] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return Ok(());
            }
        }
        Err(JsonError::Malformed)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, RFC 8259 §6.
    fn number(&mut self) -> Result<Value<'a>, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::Malformed),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
            integral = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits()?;
            integral = false;
        }
        if !integral {
            return Ok(Value::OtherNumber);
        }
        let literal = self.text.get(start..self.pos).ok_or(JsonError::Malformed)?;
        Ok(literal.parse().map_or(Value::OtherNumber, Value::Int))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            Err(JsonError::Malformed)
        } else {
            Ok(())
        }
    }

    /// Reads a string literal, borrowing it when it holds no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        // Fast path: one pass to the first byte that needs attention.
        let rest = self
            .text
            .as_bytes()
            .get(start..)
            .ok_or(JsonError::Malformed)?;
        let stop = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .ok_or(JsonError::Malformed)?;
        self.pos = start + stop;
        match self.peek() {
            Some(b'"') => {
                let s = self.text.get(start..self.pos).ok_or(JsonError::Malformed)?;
                self.pos += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            _ => return Err(JsonError::Malformed),
        }
        // Slow path: at least one escape.
        let mut out = String::from(self.text.get(start..self.pos).ok_or(JsonError::Malformed)?);
        loop {
            let byte = self.peek().ok_or(JsonError::Malformed)?;
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    self.pos += 1;
                    let esc = self.peek().ok_or(JsonError::Malformed)?;
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(JsonError::Malformed),
                    }
                }
                0x00..=0x1f => return Err(JsonError::Malformed),
                _ => {
                    // Copy one whole UTF-8 character; `text` is valid UTF-8.
                    let ch = self
                        .text
                        .get(self.pos..)
                        .and_then(|rest| rest.chars().next())
                        .ok_or(JsonError::Malformed)?;
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already read), joining surrogate pairs and
    /// refusing lone surrogates.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.text.get(self.pos..self.pos + 2) != Some("\\u") {
                    return Err(JsonError::Malformed);
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(JsonError::Malformed);
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(JsonError::Malformed),
            _ => first,
        };
        char::from_u32(code).ok_or(JsonError::Malformed)
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let hex = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or(JsonError::Malformed)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JsonError::Malformed);
        }
        self.pos += 4;
        u32::from_str_radix(hex, 16).map_err(|_| JsonError::Malformed)
    }

    /// An array: kept as strings when every element is one, else checked and discarded.
    fn array(&mut self) -> Result<Value<'a>, JsonError> {
        self.expect(b'[')?;
        let mut strings = Some(Vec::new());
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::StrArray(Vec::new()));
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(b'"') {
                let s = self.string()?;
                if let Some(list) = strings.as_mut() {
                    list.push(s);
                }
            } else {
                strings = None;
                self.skip_value(1)?;
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(strings.map_or(Value::Compound, Value::StrArray));
                }
                _ => return Err(JsonError::Malformed),
            }
        }
    }

    /// Checks and discards one value at nesting `depth`.
    fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::Malformed);
        }
        self.skip_ws();
        match self.peek().ok_or(JsonError::Malformed)? {
            b'"' => self.string().map(drop),
            b'{' => self.skip_object(depth),
            b'[' => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(JsonError::Malformed),
                    }
                }
            }
            b't' | b'f' | b'n' => self.literal(),
            _ => self.number().map(drop),
        }
    }

    /// Checks and discards a nested object, duplicates in it included.
    fn skip_object(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::Malformed);
        }
        self.expect(b'{')?;
        let mut names: Vec<Cow<'a, str>> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let name = self.string()?;
            if names.contains(&name) {
                return Err(JsonError::Duplicate);
            }
            names.push(name);
            self.skip_ws();
            self.expect(b':')?;
            self.skip_value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(JsonError::Malformed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every member of `text`, all treated as unknown, like a reader that knows no names.
    fn read_all(text: &str) -> Result<Vec<(String, Value<'_>)>, JsonError> {
        let mut obj = Object::new(text.as_bytes())?;
        let mut out = Vec::new();
        while let Some(key) = obj.next_key()? {
            if obj.unknown.contains(&key) {
                return Err(JsonError::Duplicate);
            }
            obj.unknown.push(key.clone());
            out.push((key.into_owned(), obj.value()?));
        }
        Ok(out)
    }

    #[test]
    fn reads_members_and_values() {
        let got = read_all(
            r#" { "a" : "x", "b":-12, "c":1.5, "d":[ "r1","r2" ], "e":[1,{"k":null}], "f":{}, "g":true } "#,
        )
        .unwrap();
        let want = vec![
            ("a".to_owned(), Value::Str("x".into())),
            ("b".to_owned(), Value::Int(-12)),
            ("c".to_owned(), Value::OtherNumber),
            (
                "d".to_owned(),
                Value::StrArray(vec!["r1".into(), "r2".into()]),
            ),
            ("e".to_owned(), Value::Compound),
            ("f".to_owned(), Value::Compound),
            ("g".to_owned(), Value::Literal),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn escapes_decode_so_an_escaped_name_is_the_same_name() {
        let got = read_all(r#"{"al\u0067":"a\"b\\c\n\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(got[0].0, "alg");
        assert_eq!(got[0].1, Value::Str("a\"b\\c\n\u{e9}\u{1f600}".into()));
        assert_eq!(
            read_all(r#"{"alg":1,"al\u0067":2}"#),
            Err(JsonError::Duplicate)
        );
    }

    #[test]
    fn integers_only_when_integral_and_in_range() {
        let got = read_all(r#"{"a":9223372036854775807,"b":9223372036854775808,"c":1e3,"d":-0}"#)
            .unwrap();
        assert_eq!(got[0].1, Value::Int(i64::MAX));
        assert_eq!(got[1].1, Value::OtherNumber);
        assert_eq!(got[2].1, Value::OtherNumber);
        assert_eq!(got[3].1, Value::Int(0));
    }

    #[test]
    fn duplicates_in_nested_objects_are_refused() {
        assert_eq!(
            read_all(r#"{"a":{"x":1,"x":2}}"#),
            Err(JsonError::Duplicate)
        );
        assert_eq!(
            read_all(r#"{"a":[{"x":1,"x":2}]}"#),
            Err(JsonError::Duplicate)
        );
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        let cases = [
            ("array at top", "[1]"),
            ("string at top", "\"x\""),
            ("empty", ""),
            ("trailing bytes", "{}x"),
            ("two objects", "{}{}"),
            ("trailing comma", r#"{"a":1,}"#),
            ("missing colon", r#"{"a" 1}"#),
            ("unquoted key", "{a:1}"),
            ("single quotes", "{'a':1}"),
            ("leading zero", r#"{"a":01}"#),
            ("plus sign", r#"{"a":+1}"#),
            ("bare dot", r#"{"a":1.}"#),
            ("bare exponent", r#"{"a":1e}"#),
            ("control char", "{\"a\":\"x\u{1}\"}"),
            ("raw newline", "{\"a\":\"x\ny\"}"),
            ("bad escape", r#"{"a":"\x"}"#),
            ("short unicode escape", r#"{"a":"\u12"}"#),
            ("lone high surrogate", r#"{"a":"\ud800"}"#),
            ("lone low surrogate", r#"{"a":"\udc00"}"#),
            ("unterminated string", r#"{"a":"x"#),
            ("unterminated object", r#"{"a":1"#),
            ("bad literal", r#"{"a":tru}"#),
            ("NaN", r#"{"a":NaN}"#),
            ("unclosed array", r#"{"a":[1,2}"#),
        ];
        for (name, text) in cases {
            assert_eq!(read_all(text), Err(JsonError::Malformed), "{name}");
        }
        assert_eq!(
            Object::new(&[b'{', 0xff, b'}']).err(),
            Some(JsonError::Malformed),
            "invalid utf-8"
        );
    }

    #[test]
    fn nesting_is_capped() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(read_all(&deep), Err(JsonError::Malformed));
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(10), "]".repeat(10));
        assert!(read_all(&ok).is_ok());
    }
}
