//! Device, OS and browser families from a `User-Agent` header: a few ordered
//! substring rules, enough for reports by family (no versions, no regex
//! database). Unknown agents are `other`.

/// The families of one user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub device: &'static str,
    pub os: &'static str,
    pub browser: &'static str,
}

/// Classifies a `User-Agent` value.
pub fn classify(ua: &str) -> Agent {
    // Bounded: the header may be long, the tokens sit near its start.
    let ua = ua.get(..ua.len().min(512)).unwrap_or("");
    let has = |s: &str| ua.contains(s);
    let bot = has("bot") || has("Bot") || has("spider") || has("crawl");
    let device = if bot {
        "bot"
    } else if has("SmartTV") || has("SMART-TV") || has("Tizen") || has("Web0S") || has("AFT") {
        "tv"
    } else if has("iPad") || (has("Android") && !has("Mobile")) || has("Tablet") {
        "tablet"
    } else if has("Mobile") || has("iPhone") || has("Android") {
        "mobile"
    } else if has("Windows") || has("Macintosh") || has("X11") || has("Linux") || has("CrOS") {
        "desktop"
    } else {
        "other"
    };
    let os = if has("Android") {
        "Android"
    } else if has("iPhone") || has("iPad") || has("iPod") {
        "iOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        "other"
    };
    let browser = if bot {
        "bot"
    } else if has("Edg/") || has("Edge/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("SamsungBrowser") {
        "Samsung Internet"
    } else if has("HeadlessChrome") {
        "Headless Chrome"
    } else if has("Firefox/") || has("FxiOS") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS") || has("Chromium") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if has("curl/") || has("Wget") || has("python") || has("node") {
        "tool"
    } else {
        "other"
    };
    Agent {
        device,
        os,
        browser,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(
            classify(chrome),
            Agent {
                device: "desktop",
                os: "Linux",
                browser: "Chrome"
            }
        );
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let a = classify(iphone);
        assert_eq!((a.device, a.os, a.browser), ("mobile", "iOS", "Safari"));
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0";
        assert_eq!(classify(edge).browser, "Edge");
        assert_eq!(classify(edge).os, "Windows");
        let tab = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
        assert_eq!(classify(tab).device, "tablet");
        assert_eq!(classify("").device, "other");
        assert_eq!(classify("Googlebot/2.1").browser, "bot");
    }
}
