//! Reading back the SVG that plotters writes, for tests of the plots' structure (shared by
//! upsched-sim's and upsched-cli's tests).

// Each test crate that includes this uses only some of it.
#![allow(dead_code)]

use std::collections::HashMap;

/// An element of an SVG: its attributes and its text.
pub struct Element {
    pub attrs: HashMap<String, String>,
    pub text: String,
}

impl Element {
    pub fn num(&self, name: &str) -> f64 {
        self.attrs[name].parse().unwrap()
    }
}

/// Every `<tag ...>` of `svg`, as plotters writes them (one element per tag, attributes in
/// double quotes).
pub fn elements(svg: &str, tag: &str) -> Vec<Element> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        let end = rest.find('>').unwrap();
        let head = rest[..end].trim_end_matches('/');
        let mut attrs = HashMap::new();
        for pair in head.split("\" ") {
            if let Some((k, v)) = pair.split_once("=\"") {
                attrs.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
            }
        }
        let text = if rest[..end].ends_with('/') {
            String::new()
        } else {
            let close = format!("</{tag}>");
            let body = &rest[end + 1..];
            body[..body.find(&close).unwrap()].trim().to_string()
        };
        out.push(Element { attrs, text });
    }
    out
}

/// The legend rows of a plot: (label, swatch colour), the legend being the column of text
/// right of the chart whose rows each have a swatch at their left.
pub fn legend(svg: &str) -> Vec<(String, String)> {
    let texts = elements(svg, "text");
    let rects = elements(svg, "rect");
    let lines = elements(svg, "polyline");
    let labels: Vec<&Element> = {
        // The legend's labels share the rightmost x of the left-anchored texts.
        let left: Vec<&Element> = texts
            .iter()
            .filter(|t| t.attrs.get("text-anchor").map(String::as_str) == Some("start"))
            .collect();
        let x = left.iter().map(|t| t.num("x")).fold(f64::MIN, f64::max);
        left.into_iter().filter(|t| t.num("x") == x).collect()
    };
    labels
        .iter()
        .map(|label| {
            let (x, y) = (label.num("x"), label.num("y"));
            let near = |sx: f64, sy: f64| sx < x && x - sx < 30.0 && (sy - y).abs() <= 6.0;
            let swatch = rects
                .iter()
                .find(|r| near(r.num("x"), r.num("y") + r.num("height") / 2.0))
                .map(|r| r.attrs["fill"].clone())
                .or_else(|| {
                    lines.iter().find_map(|l| {
                        let (lx, ly) = first_point(&l.attrs["points"]);
                        near(lx, ly).then(|| l.attrs["stroke"].clone())
                    })
                })
                .unwrap_or_else(|| panic!("legend row {:?} has no swatch", label.text));
            (label.text.clone(), swatch)
        })
        .collect()
}

pub fn points(text: &str) -> Vec<(f64, f64)> {
    text.split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

fn first_point(text: &str) -> (f64, f64) {
    points(text)[0]
}
