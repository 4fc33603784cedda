//! QR codes as small inline SVG, for the TOTP enrolment page to show the `otpauth://` URI.
//!
//! Knows how to draw a module matrix as SVG; knows nothing of TOTP, users or what the text
//! means. The matrix comes from `qrcodegen` (Project Nayuki; no dependencies, no
//! `unsafe`). The SVG is escaped by construction: the caller's label is the only text that
//! reaches it, through `html::escape_into` (the pages' one escaper); everything else is
//! numbers and fixed markup. No script, no `style` (which the pages' CSP would block anyway)
//! and nothing fetched.

use std::fmt::Write as _;

use qrcodegen::{QrCode, QrCodeEcc};

use super::html::escape_into;

/// Light modules around the code on every side, as ISO/IEC 18004 requires.
const QUIET_ZONE_MODULES: i32 = 4;
/// Size of one module in CSS pixels when the page does not scale the image.
const MODULE_PX: i32 = 4;

/// An SVG drawn here: only [`svg`] makes one, so the pages can embed it as markup
/// ([`Html::qr`](super::html::Html::qr)) without opening a way for other strings.
pub(super) struct QrSvg(String);

impl QrSvg {
    /// The markup.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The QR code of `text` (error correction level M or better) as a standalone `<svg>` element
/// named `label` for assistive technology; `None` when `text` is over the capacity of the
/// largest QR code (2331 bytes of arbitrary UTF-8 at level M).
///
/// Dark modules are one `<path>`, drawn as horizontal runs over a white `<rect>`, so the code
/// stays dark on light (what scanners read) even on a dark page.
pub(super) fn svg(text: &str, label: &str) -> Option<QrSvg> {
    // `encode_text` raises the level above M when that costs no extra size: free robustness.
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let side = qr.size() + 2 * QUIET_ZONE_MODULES;
    let px = side * MODULE_PX;
    let mut out = String::with_capacity(256 + 12 * usize::try_from(side * side / 4).unwrap_or(0));
    write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" width="{px}" height="{px}" shape-rendering="crispEdges" role="img" aria-label=""#
    )
    .expect("writing to a String cannot fail");
    escape_into(&mut out, label);
    write!(
        out,
        r##""><rect width="{side}" height="{side}" fill="#fff"/><path fill="#000" d=""##
    )
    .expect("writing to a String cannot fail");
    push_runs(&mut out, &qr);
    out.push_str(r#""/></svg>"#);
    Some(QrSvg(out))
}

/// Appends one `M x,y h n v1 h -n z` rectangle per horizontal run of dark modules, offset by
/// the quiet zone.
fn push_runs(out: &mut String, qr: &QrCode) {
    let size = qr.size();
    for y in 0..size {
        let mut x = 0;
        while x < size {
            if !qr.get_module(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < size && qr.get_module(x, y) {
                x += 1;
            }
            let run = x - start;
            write!(
                out,
                "M{},{}h{run}v1h-{run}z",
                start + QUIET_ZONE_MODULES,
                y + QUIET_ZONE_MODULES
            )
            .expect("writing to a String cannot fail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/latchd:alice@example.com\
                       ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=latchd\
                       &algorithm=SHA1&digits=6&period=30";

    /// The value of attribute `name` on the element starting at `tag` in `svg`.
    fn attr<'a>(svg: &'a str, tag: &str, name: &str) -> &'a str {
        let element = &svg[svg.find(tag).unwrap()..];
        let element = &element[..element.find('>').unwrap()];
        let start = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        let value = &element[start..];
        &value[..value.find('"').unwrap()]
    }

    /// The dark modules the path draws, in SVG coordinates.
    fn drawn(svg: &str) -> Vec<(i32, i32)> {
        let d = attr(svg, "<path", "d");
        let mut out = Vec::new();
        for rect in d.split('z').filter(|r| !r.is_empty()) {
            let rest = rect.strip_prefix('M').unwrap();
            let (xy, rest) = rest.split_once('h').unwrap();
            let (x, y) = xy.split_once(',').unwrap();
            let (run, back) = rest.split_once("v1h-").unwrap();
            assert_eq!(run, back, "{rect}: closes where it started");
            let (x, y, run): (i32, i32, i32) =
                (x.parse().unwrap(), y.parse().unwrap(), run.parse().unwrap());
            assert!(run > 0);
            out.extend((x..x + run).map(|x| (x, y)));
        }
        out
    }

    #[test]
    fn the_otpauth_uri_gives_the_expected_symbol() {
        let qr = QrCode::encode_text(URI, QrCodeEcc::Medium).unwrap();
        // 127 bytes in byte mode: at level M version 8 holds 152, version 7 only 122.
        assert_eq!(URI.len(), 127);
        assert_eq!(qr.version().value(), 8);
        assert_eq!(qr.size(), 49);
        assert!(matches!(qr.error_correction_level(), QrCodeEcc::Medium));
        let short = QrCode::encode_text("HELLO WORLD", QrCodeEcc::Medium).unwrap();
        assert_eq!((short.version().value(), short.size()), (1, 21));
        // Version 1 has room for quartile here, and encode_text takes it.
        assert!(matches!(
            short.error_correction_level(),
            QrCodeEcc::Quartile
        ));
    }

    #[test]
    fn the_svg_is_one_element_with_one_path_and_nothing_active() {
        let svg = svg(URI, "TOTP setup code").unwrap().0;
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" "),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(svg.matches("<rect").count(), 1);
        assert_eq!(
            svg.matches('<').count(),
            4,
            "svg, rect, path and the end tag"
        );
        assert_eq!(attr(&svg, "<svg", "shape-rendering"), "crispEdges");
        assert_eq!(attr(&svg, "<svg", "role"), "img");
        assert_eq!(attr(&svg, "<svg", "aria-label"), "TOTP setup code");
        for banned in ["script", "style", "href", "on", "url(", "<!", "<?"] {
            assert!(!svg.contains(&format!(" {banned}")), "{banned}");
            assert!(!svg.contains(&format!("<{banned}")), "{banned}");
        }
        assert_eq!(
            svg.matches("http").count(),
            1,
            "the xmlns name, which nothing fetches"
        );
    }

    #[test]
    fn modules_sit_inside_a_four_module_quiet_zone() {
        let svg = svg(URI, "code").unwrap().0;
        let qr = QrCode::encode_text(URI, QrCodeEcc::Medium).unwrap();
        let side = qr.size() + 8;
        assert_eq!(attr(&svg, "<svg", "viewBox"), format!("0 0 {side} {side}"));
        assert_eq!(attr(&svg, "<rect", "width"), side.to_string());
        assert_eq!(attr(&svg, "<svg", "width"), (side * 4).to_string());
        let drawn = drawn(&svg);
        for &(x, y) in &drawn {
            assert!((4..4 + qr.size()).contains(&x), "x {x} in the quiet zone");
            assert!((4..4 + qr.size()).contains(&y), "y {y} in the quiet zone");
        }
        // Exactly the dark modules of the matrix, each once.
        let mut want: Vec<(i32, i32)> = (0..qr.size())
            .flat_map(|y| (0..qr.size()).map(move |x| (x, y)))
            .filter(|&(x, y)| qr.get_module(x, y))
            .map(|(x, y)| (x + 4, y + 4))
            .collect();
        let mut got = drawn;
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        // The three finder patterns sit in the corners just inside the quiet zone: 7x7, dark
        // except the ring two modules from the centre (ISO/IEC 18004).
        let far = 4 + qr.size() - 7;
        for (left, top) in [(4, 4), (far, 4), (4, far)] {
            for dy in 0..7 {
                for dx in 0..7 {
                    let dark = (dx - 3i32).abs().max((dy - 3i32).abs()) != 2;
                    let at = (left + dx, top + dy);
                    assert_eq!(got.binary_search(&at).is_ok(), dark, "{at:?}");
                }
            }
        }
    }

    #[test]
    fn the_label_is_escaped() {
        let svg = svg("x", r#"a"b'c<d>e&f" onload="alert(1)"#).unwrap().0;
        assert_eq!(
            attr(&svg, "<svg", "aria-label"),
            "a&quot;b&#39;c&lt;d&gt;e&amp;f&quot; onload=&quot;alert(1)"
        );
        assert_eq!(svg.matches('<').count(), 4);
        assert_eq!(svg.matches('>').count(), 4);
        assert!(!svg.contains(" onload=\""));
    }

    #[test]
    fn the_text_never_reaches_the_markup() {
        let svg = svg("</svg><script>alert(1)</script>", "code").unwrap().0;
        assert!(!svg.contains("script"));
        assert_eq!(svg.matches('<').count(), 4);
    }

    #[test]
    fn capacity_bounds() {
        // The longest URI latchd can make: a 254-byte email, every byte percent-encoded.
        let longest = format!("otpauth://totp/latchd:{}{}", "%2B".repeat(254), &URI[39..]);
        assert!(svg(&longest, "code").is_some());
        assert!(svg(&"a".repeat(2331), "code").is_some());
        assert!(svg(&"a".repeat(2332), "code").is_none());
    }
}
