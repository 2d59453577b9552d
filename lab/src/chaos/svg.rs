//! The history drawn as a timeline (SVG, no dependencies): one row per load-balancer node, filled while it
//! holds the VIP (red where two nodes hold it); a row for the client's neighbour entry (coloured by the node it
//! names, hatched red where it names a node that does not hold the VIP); a row of faults (labelled bands from
//! start to heal); and a row of client requests (red ticks for failures).
use std::fmt::Write as _;

use super::faults::faults;
use super::history::Event;

const COLOURS: [&str; 3] = ["#2b7bb9", "#3a9b4a", "#c08a1e"];
const RED: &str = "#d62728";
const ROW: f64 = 26.0;
const LEFT: f64 = 90.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Render `h`; `width` in pixels for the time axis.
pub fn render(h: &[Event], title: &str, width: f64) -> String {
    let nodes: Vec<String> = h
        .iter()
        .find_map(|e| match e {
            Event::Meta { nodes, .. } => Some(nodes.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let end = h.iter().map(Event::t).fold(1.0, f64::max);
    let x = |t: f64| LEFT + t / end * width;
    let rows = nodes.len() + 3;
    let height = 40.0 + rows as f64 * ROW + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        LEFT + width + 20.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="4" y="16" font-size="13">{}</text>"#,
        esc(title)
    );
    let row_y = |r: usize| 30.0 + r as f64 * ROW;
    let labels: Vec<String> = nodes
        .iter()
        .map(|n| format!("{n} holds"))
        .chain(["client ARP".into(), "faults".into(), "requests".into()])
        .collect();
    for (r, l) in labels.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="4" y="{}">{}</text>"#,
            row_y(r) + 15.0,
            esc(l)
        );
    }
    draw_samples(&mut s, h, &nodes, &x, &row_y);
    draw_faults(&mut s, h, &x, row_y(nodes.len() + 1));
    draw_requests(&mut s, h, &x, row_y(nodes.len() + 2));
    let axis_y = row_y(rows) + 12.0;
    let step = if end > 600.0 {
        60.0
    } else if end > 120.0 {
        30.0
    } else {
        10.0
    };
    let mut t = 0.0;
    while t <= end {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{axis_y}" text-anchor="middle">{t:.0}s</text>"#,
            x(t)
        );
        t += step;
    }
    s.push_str("</svg>\n");
    s
}

fn draw_samples(
    s: &mut String,
    h: &[Event],
    nodes: &[String],
    x: &impl Fn(f64) -> f64,
    row_y: &impl Fn(usize) -> f64,
) {
    let samples: Vec<(f64, &Vec<String>, &Option<String>)> = h
        .iter()
        .filter_map(|e| match e {
            Event::Sample {
                t, holders, arp, ..
            } => Some((*t, holders, arp)),
            _ => None,
        })
        .collect();
    // One style per row and sample interval; equal neighbours merge into one rectangle, so an hour's
    // history draws as a few hundred shapes.
    let rows = nodes.len() + 1;
    let mut open: Vec<Option<(f64, Style)>> = vec![None; rows];
    for w in samples.windows(2) {
        let (t, holders, arp) = w[0];
        for (r, cur) in open.iter_mut().enumerate() {
            let style = if r < nodes.len() {
                holders.contains(&nodes[r]).then(|| {
                    let fill = if holders.len() > 1 {
                        RED
                    } else {
                        COLOURS[r % 3]
                    };
                    (fill, 18)
                })
            } else {
                arp.as_ref().map(|a| {
                    let i = nodes.iter().position(|n| n == a).unwrap_or(0);
                    if holders.contains(a) {
                        (COLOURS[i % 3], 10)
                    } else {
                        (RED, 18)
                    }
                })
            };
            if cur.as_ref().map(|c| c.1) != Some(style) {
                if let Some((start, st)) = cur.take() {
                    rect(s, x(start), x(t), row_y(r), st);
                }
                *cur = Some((t, style));
            }
        }
    }
    let end = samples.last().map_or(0.0, |l| l.0);
    for (r, cur) in open.into_iter().enumerate() {
        if let Some((start, st)) = cur {
            rect(s, x(start), x(end), row_y(r), st);
        }
    }
}

type Style = Option<(&'static str, u32)>;

fn rect(s: &mut String, x1: f64, x2: f64, y: f64, st: Style) {
    if let Some((fill, h)) = st {
        let _ = writeln!(
            s,
            r#"<rect x="{x1:.1}" y="{:.1}" width="{:.1}" height="{h}" fill="{fill}"/>"#,
            y + 2.0,
            (x2 - x1).max(0.5)
        );
    }
}

fn draw_faults(s: &mut String, h: &[Event], x: &impl Fn(f64) -> f64, y: f64) {
    let mut open: Option<(f64, String)> = None;
    for f in faults(h) {
        if f.phase == "start" {
            open = Some((f.t, format!("{} {}", f.kind, f.node)));
        } else if let Some((start, label)) = open.take() {
            let wd = (x(f.t) - x(start)).max(2.0);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{wd:.1}" height="18" fill="#7f7f7f"><title>{}</title></rect>"##,
                x(start),
                y + 2.0,
                esc(&label)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="8" transform="rotate(-30 {:.1} {:.1})">{}</text>"#,
                x(start),
                y,
                x(start),
                y,
                esc(&label)
            );
        }
    }
}

fn draw_requests(s: &mut String, h: &[Event], x: &impl Fn(f64) -> f64, y: f64) {
    let mut last = f64::NEG_INFINITY;
    for e in h {
        if let Event::Request { t, ok: false, .. } = e {
            // Failures closer than a pixel share one tick.
            if x(*t) - last >= 1.0 {
                last = x(*t);
                let _ = writeln!(
                    s,
                    r#"<rect x="{last:.1}" y="{:.1}" width="1" height="18" fill="{RED}"/>"#,
                    y + 2.0
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::read;

    #[test]
    fn renders_holders_faults_and_failures() {
        let h = read(
            r#"{"type":"meta","t":0.0,"implementation":"t","seed":1,"nodes":["lb0","lb1"],"priorities":[150,120],"advert_ms":100}
{"type":"sample","t":0.0,"holders":["lb0"],"arp":"lb0"}
{"type":"fault","t":1.0,"kind":"kill9","node":"lb0","phase":"start"}
{"type":"request","t":1.1,"end":1.2,"ok":false}
{"type":"sample","t":1.5,"holders":["lb0","lb1"],"arp":"lb1"}
{"type":"fault","t":2.0,"kind":"kill9","node":"lb0","phase":"heal"}
{"type":"sample","t":3.0,"holders":["lb1"],"arp":"lb1"}
"#
            .as_bytes(),
        )
        .unwrap();
        let svg = render(&h, "test <run>", 600.0);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("test &lt;run&gt;"));
        assert!(svg.contains("kill9 lb0"));
        // Two holders in both rows, one failed request.
        assert_eq!(svg.matches("#d62728").count(), 3, "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
