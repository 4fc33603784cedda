//! The one writer of HTML. Text reaches a page only through [`Html::text`] and attribute
//! values only through [`Html::open`]'s pairs, both escaped; markup comes only from
//! `&'static str` (tags, attribute names, fixed fragments), which a request cannot produce,
//! and from a [`QrSvg`](super::qr::QrSvg), which only `qr.rs` draws (numbers, fixed markup,
//! and a label it escapes). So user data cannot become markup, by construction.

/// An HTML document being written.
pub(super) struct Html {
    out: String,
}

impl Html {
    /// A document opening with `<!doctype html>`.
    pub(super) fn new() -> Self {
        let mut out = String::with_capacity(4096);
        out.push_str("<!doctype html>\n");
        Self { out }
    }

    /// `<tag a="v" …>`; values escaped. An empty value writes the attribute bare
    /// (`required`).
    pub(super) fn open(&mut self, tag: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            self.out.push(' ');
            self.out.push_str(name);
            if !value.is_empty() {
                self.out.push_str("=\"");
                escape_into(&mut self.out, value);
                self.out.push('"');
            }
        }
        self.out.push('>');
        self
    }

    /// `</tag>`.
    pub(super) fn close(&mut self, tag: &'static str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag …>text</tag>`.
    pub(super) fn element(
        &mut self,
        tag: &'static str,
        attrs: &[(&'static str, &str)],
        text: &str,
    ) -> &mut Self {
        self.open(tag, attrs).text(text).close(tag)
    }

    /// Escaped text.
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.out, text);
        self
    }

    /// A fixed fragment of markup, written as is (a stylesheet, an inline SVG the page
    /// renders itself).
    pub(super) fn markup(&mut self, fragment: &'static str) -> &mut Self {
        self.out.push_str(fragment);
        self
    }

    /// An inline SVG QR code, as [`qr::svg`](super::qr::svg) drew it.
    pub(super) fn qr(&mut self, svg: &super::qr::QrSvg) -> &mut Self {
        self.out.push_str(svg.as_str());
        self
    }

    /// The document.
    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// Appends `text` with `& < > " '` escaped: safe in text and in double-quoted attributes.
pub(super) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attribute_values_are_escaped() {
        let mut html = Html::new();
        let hostile = r#""><script>alert('x')</script>&"#;
        html.open("input", &[("value", hostile), ("required", "")])
            .element("p", &[("title", hostile)], hostile);
        let out = html.finish();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out
            .contains(r#"value="&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;""#));
        assert!(out.contains("<input value=\"&quot;"), "{out}");
        assert!(out.contains(" required>"), "{out}");
        assert!(out.contains("<p title=\"&quot;&gt;"), "{out}");
        assert!(out.contains(">&quot;&gt;&lt;script&gt;"), "{out}");
        assert!(out.starts_with("<!doctype html>\n"));
    }

    #[test]
    fn non_ascii_text_passes_unchanged() {
        let mut out = String::new();
        escape_into(&mut out, "Émile ✓ 😀");
        assert_eq!(out, "Émile ✓ 😀");
    }
}
