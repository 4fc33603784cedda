use super::*;

fn site(public: &str, domain: Option<&str>, secure: bool) -> Site {
    Site::new(Some(PublicUrl::parse(public).unwrap()), domain, secure).unwrap()
}

fn example() -> Site {
    site("https://auth.example.test", Some("example.test"), true)
}

#[test]
fn targets_inside_the_cookie_domain_are_followed() {
    let s = example();
    for ok in [
        "https://example.test",
        "https://example.test/",
        "https://app.example.test/",
        "https://app.example.test:8443/dash?x=1#top",
        "https://deep.app.EXAMPLE.test/a/b",
        "https://auth.example.test/",
        "https://app.example.test/%7Euser",
        "https://app.example.test/wiki/%C3%89t%C3%A9", // Été: non-ASCII that is not a space
        "https://app.example.test/100%25",
        "https://app.example.test/a%zz",
    ] {
        assert_eq!(s.safe_redirect(ok), Some(ok), "{ok}");
    }
}

#[test]
fn hostile_targets_are_never_followed() {
    let s = example();
    let hostile = [
        "//evil.test",
        "//evil.test/",
        "/\\evil.test",
        "\\\\evil.test",
        "/",
        "/dashboard",
        "https://evil.test",
        "https://evil.test/https://app.example.test",
        "https://example.test.evil.test",
        "https://app.example.test.evil.test/",
        "https://evilexample.test",
        "https://xexample.test",
        "https://evil.test@example.test",
        "https://evil.test@app.example.test/",
        "https://app.example.test@evil.test",
        "https://example.test%2f@evil.test",
        "https://example.test%2F@evil.test",
        "https://example.test%40evil.test",
        "https://app.example.test\\@evil.test",
        "https:/app.example.test",
        "https:app.example.test",
        "HTTPS://app.example.test",
        "javascript:alert(1)",
        "JavaScript://app.example.test/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "http://app.example.test/",
        "ftp://app.example.test/",
        "https://app.example.test/\tx",
        "https://app.example.test/\nx",
        "https://app.example.test/\rx",
        "https://app.example.test/ x",
        "https://app.example.test/%09x",
        "https://app.example.test/search?q=a%20b",
        "https://app.example.test/%0ax",
        "https://app.example.test/%0D%0ASet-Cookie:x",
        "https://app.example.test/%250a",
        "https://app.example.test/%5c",
        "https://app.example.test/%C2%85x",    // NEL, a C1 control
        "https://app.example.test/%C2%A0x",    // no-break space
        "https://app.example.test/%E2%80%A8x", // line separator
        "https://app.example.test/%E3%80%80x", // ideographic space
        "https://app.example.test/%25E2%2580%25A8", // the same, encoded twice
        "https://app.example.test/%FFx",       // not UTF-8
        "https://app.example.test/%25252525250a", // deeper than anyone encodes
        "\thttps://app.example.test/",
        "https://app.example.test./",
        "https://app..example.test/",
        "https://-app.example.test/",
        "https://app.example.test:0/",
        "https://app.example.test:99999/",
        "https://app.example.test:/",
        "https://app.example.test:443@evil.test/",
        "https://[::1]/",
        "https://127.0.0.1/",
        "https://app.exаmple.test/", // Cyrillic а
        "https://app.example.test?next=/",
        "https://app.example.test#x",
        "",
    ];
    assert!(hostile.len() >= 25);
    for target in hostile {
        assert_eq!(s.safe_redirect(target), None, "{target:?}");
    }
}

#[test]
fn plain_http_targets_only_with_insecure_cookies() {
    let dev = site("http://auth.example.test:8080", Some("example.test"), false);
    assert!(dev.safe_redirect("http://app.example.test:3000/").is_some());
    assert!(dev.safe_redirect("https://app.example.test/").is_some());
    assert!(example()
        .safe_redirect("http://app.example.test/")
        .is_none());
}

#[test]
fn without_a_cookie_domain_only_the_public_host_is_a_target() {
    let s = site("https://auth.example.test", None, true);
    assert!(s.safe_redirect("https://auth.example.test/x").is_some());
    assert!(s.safe_redirect("https://app.example.test/").is_none());
    assert!(s.safe_redirect("https://example.test/").is_none());
    // Without a public URL nothing is followed.
    assert!(Site::default()
        .safe_redirect("https://auth.example.test/")
        .is_none());
}

#[test]
fn the_public_url_is_an_origin() {
    for (text, origin) in [
        ("https://auth.example.test", "https://auth.example.test"),
        ("https://Auth.Example.test/", "https://auth.example.test"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        // Browsers leave the default port out of Origin, and so does latchd.
        ("https://auth.example.test:443", "https://auth.example.test"),
        ("http://auth.example.test:80", "http://auth.example.test"),
        (
            "https://auth.example.test:80",
            "https://auth.example.test:80",
        ),
    ] {
        assert_eq!(PublicUrl::parse(text).unwrap().origin(), origin, "{text}");
    }
    for bad in [
        "auth.example.test",
        "ftp://auth.example.test",
        "https://auth.example.test/login",
        "https://auth.example.test?x",
        "https://user@auth.example.test",
        "https://auth.example.test:0",
        "https://auth.example.test:http",
        "https://",
        "https://auth_example.test",
    ] {
        assert!(PublicUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_cookie_domain_must_contain_the_public_host() {
    let public = || Some(PublicUrl::parse("https://auth.example.test").unwrap());
    assert!(Site::new(public(), Some("example.test"), true).is_ok());
    assert!(Site::new(public(), Some(".example.test"), true).is_ok());
    assert!(Site::new(public(), Some("auth.example.test"), true).is_ok());
    for (bad, why) in [
        ("127.0.0.1", "IP address"),
        ("::1", "IP address"),
        ("localhost", "no dot"),
        ("test", "no dot"),
        ("other.test", "parent"),
        ("ample.test", "parent"),
        ("app.auth.example.test", "parent"),
        ("exa_mple.test", "domain name"),
        ("0.0.1", "IP address"),
        (".", "only dots"),
    ] {
        let err = Site::new(public(), Some(bad), true).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let err = Site::new(None, Some("example.test"), true).unwrap_err();
    assert!(err.contains("LATCHD_PUBLIC_URL"), "{err}");
    // An IP public URL can have no cookie domain at all.
    let ip = Some(PublicUrl::parse("http://127.0.0.1:8080").unwrap());
    assert!(Site::new(ip.clone(), None, false).is_ok());
    let err = Site::new(ip, Some("example.test"), false).unwrap_err();
    assert!(err.contains("IP address"), "{err}");
}
