//! A small typed XML model for the manifests (the MPD, the Smooth client
//! manifest): writers build an [`Element`] tree and [`Element::to_document`]
//! renders it. This renderer is the only place XML text is made, so every
//! attribute value and text is escaped in one way and no writer splices
//! formatted pieces together.
//!
//! Layout: two spaces of indentation per level, an element with only text
//! on one line (`<BaseURL>t/</BaseURL>`), an element without children
//! self-closed. Attributes keep the order they were added in.

use std::borrow::Cow;
use std::fmt::Display;

/// One XML element: its name (with a prefix, e.g. `cenc:pssh`), attributes
/// in order, and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    name: Cow<'static, str>,
    attrs: Vec<(Cow<'static, str>, String)>,
    children: Vec<Node>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Element {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds an attribute (any displayable value; escaped when rendered).
    pub fn attr(mut self, name: impl Into<Cow<'static, str>>, value: impl Display) -> Self {
        self.set(name, value);
        self
    }

    /// Adds an attribute if `value` is `Some`.
    pub fn attr_opt(self, name: impl Into<Cow<'static, str>>, value: Option<impl Display>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    /// Adds an attribute to an element being built in place.
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, value: impl Display) {
        self.attrs.push((name.into(), value.to_string()));
    }

    /// Appends a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.push(child);
        self
    }

    /// Appends child elements.
    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        self.children
            .extend(children.into_iter().map(Node::Element));
        self
    }

    /// Appends text (escaped when rendered).
    pub fn text(mut self, text: impl Display) -> Self {
        self.children.push(Node::Text(text.to_string()));
        self
    }

    /// Appends a child element to an element being built in place.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of attribute `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The whole document: the XML declaration, this element as the root,
    /// a final newline.
    pub fn to_document(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        self.render(&mut out, 0);
        out
    }

    fn render(&self, out: &mut String, depth: usize) {
        indent(out, depth);
        out.push('<');
        out.push_str(&self.name);
        for (name, value) in &self.attrs {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_into(out, value, true);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push('>');
        let only_text = self.children.iter().all(|c| matches!(c, Node::Text(_)));
        if only_text {
            for c in &self.children {
                if let Node::Text(t) = c {
                    escape_into(out, t, false);
                }
            }
        } else {
            out.push('\n');
            for c in &self.children {
                match c {
                    Node::Element(e) => e.render(out, depth + 1),
                    Node::Text(t) => {
                        indent(out, depth + 1);
                        escape_into(out, t, false);
                        out.push('\n');
                    }
                }
            }
            indent(out, depth);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push_str(">\n");
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Escapes markup characters; in attribute values also quotes and the
/// whitespace an XML parser would otherwise normalise to spaces.
fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            // Not allowed in XML 1.0 at all, even as references.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;

    #[test]
    fn renders_nested_elements_text_and_empty_elements() {
        let doc = Element::new("a")
            .attr("x", 1)
            .child(Element::new("b").text("t"))
            .child(Element::new("c").attr("y", "z"))
            .to_document();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a x=\"1\">\n  <b>t</b>\n  <c y=\"z\"/>\n</a>\n"
        );
    }

    /// What goes in comes back out of an independent parser unchanged.
    #[test]
    fn special_characters_survive_a_parse() {
        let nasty = "a&b<c>d\"e'f\ng\th\u{e9}";
        let doc = Element::new("r")
            .attr("v", nasty)
            .child(Element::new("t").text(nasty))
            .to_document();
        let mut reader = quick_xml::Reader::from_str(&doc);
        let (mut attr, mut text) = (None, String::new());
        let mut in_t = false;
        loop {
            match reader.read_event().expect("well-formed") {
                Event::Start(e) if e.name().as_ref() == b"r" => {
                    let a = e.attributes().next().unwrap().unwrap();
                    attr = Some(a.unescape_value().unwrap().into_owned());
                }
                Event::Start(e) if e.name().as_ref() == b"t" => in_t = true,
                Event::Text(t) if in_t => text.push_str(&t.decode().unwrap()),
                Event::GeneralRef(r) if in_t => {
                    let name = r.decode().unwrap();
                    text.push_str(match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        other => panic!("unexpected reference {other}"),
                    });
                }
                Event::End(e) if e.name().as_ref() == b"t" => in_t = false,
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(attr.as_deref(), Some(nasty));
        assert_eq!(text, nasty);
    }
}
