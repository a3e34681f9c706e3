//! The dashboard's timeline of the last minutes, drawn as SVG the way
//! `shoal-chaos` draws a run (chaos/src/svg.rs): a lane for the leader
//! (one colour per node), a lane per service with its running tasks
//! (solid) against the desired count (dashed) as step lines, and a lane
//! per node shaded red while it is down. chaos's renderer reads a whole
//! journal and lives in a crate the CLI does not depend on; this one reads
//! the samples the dashboard takes each second, so only the look is shared.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use super::model::Model;

/// How far back the timeline reaches.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Service lanes drawn at most (the busiest, by name after that).
const MAX_LANES: usize = 12;
/// Node lanes drawn at most.
const MAX_NODE_LANES: usize = 16;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 40.0;
const NODE_LANE: f64 = 16.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
];

/// What the swarm looked like at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub leader: Option<String>,
    pub term: u64,
    /// Service name → (running, desired).
    pub services: BTreeMap<String, (u64, u64)>,
    /// Node hostname → whether it is down.
    pub nodes: BTreeMap<String, bool>,
}

impl Sample {
    pub fn of(model: &Model, at: i64) -> Sample {
        Sample {
            at,
            leader: model.leader().map(|n| n.hostname.clone()),
            term: model.term,
            services: model
                .services()
                .map(|s| (s.name.clone(), (s.running, s.desired)))
                .collect(),
            nodes: model
                .nodes()
                .map(|n| (n.hostname.clone(), n.state == "down"))
                .collect(),
        }
    }
}

/// The samples of the last `WINDOW`, one a second at most.
#[derive(Debug, Default)]
pub struct Timeline {
    samples: VecDeque<Sample>,
}

impl Timeline {
    pub fn push(&mut self, s: Sample) {
        let oldest = s.at - WINDOW.as_millis() as i64;
        while self.samples.front().is_some_and(|f| f.at < oldest) {
            self.samples.pop_front();
        }
        // One sample a second is kept, and the newest: a last sample less
        // than a second after the one before it gives way to the next.
        let n = self.samples.len();
        if n >= 2 && self.samples[n - 1].at - self.samples[n - 2].at < 1_000 {
            self.samples.pop_back();
        }
        self.samples.push_back(s);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// The SVG of the window ending at `now` (milliseconds): the last
    /// `WINDOW`, or since the first sample if that is later (a minute at
    /// least), so a dashboard just started draws its first minutes wide.
    pub fn render(&self, now: i64) -> String {
        let first = self.samples.front().map_or(now, |s| s.at);
        let start = (now - WINDOW.as_millis() as i64).max(first.min(now - 60_000));
        let span = (now - start).max(1) as f64;
        let x = |t: i64| LEFT + ((t.max(start) - start) as f64 / span) * (WIDTH - LEFT - RIGHT);
        let services = self.lanes();
        let mut node_names: Vec<&String> = Vec::new();
        for s in &self.samples {
            for n in s.nodes.keys() {
                if !node_names.contains(&n) && node_names.len() < MAX_NODE_LANES {
                    node_names.push(n);
                }
            }
        }
        node_names.sort();
        let colors: BTreeMap<&str, &str> = node_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), PALETTE[i % PALETTE.len()]))
            .collect();
        let top = 30.0;
        let leader_y = top;
        let svc_y = leader_y + LANE;
        let nodes_y = svc_y + LANE * services.len() as f64 + 6.0;
        let axis_y = nodes_y + NODE_LANE * node_names.len() as f64 + 6.0;
        let height = axis_y + 24.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r##"<text x="10" y="18" font-size="13" font-weight="bold">Last {}</text><text x="{LEFT}" y="18" fill="#555">leader by node · services: <tspan fill="#999">- - desired</tspan> <tspan fill="#1f77b4">— running</tspan> · nodes: <tspan fill="#d62728">▬ down</tspan></text>"##,
            match (now - start) / 1_000 {
                s if s >= 120 => format!("{} minutes", s / 60),
                s => format!("{s} seconds"),
            }
        );

        // Leader lane: one span per leadership, with the term in its title.
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">leader</text>"#,
            leader_y + LANE / 2.0
        );
        let mut spans: Vec<(i64, i64, Option<&str>, u64)> = Vec::new();
        for o in &self.samples {
            let who = o.leader.as_deref();
            match spans.last_mut() {
                Some(last) if last.2 == who && last.3 == o.term => last.1 = o.at,
                Some(last) => {
                    last.1 = o.at;
                    spans.push((o.at, o.at, who, o.term));
                }
                None => spans.push((o.at, o.at, who, o.term)),
            }
        }
        if let Some(last) = spans.last_mut() {
            last.1 = now;
        }
        for (i, (from, to, who, term)) in spans.iter().enumerate() {
            let fill = who
                .and_then(|n| colors.get(n))
                .copied()
                .unwrap_or("#dddddd");
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{fill}"><title>{} (term {term})</title></rect>"#,
                x(*from),
                leader_y + 6.0,
                (x(*to) - x(*from)).max(0.5),
                LANE - 12.0,
                esc(who.unwrap_or("no leader"))
            );
            // A change of leader: a mark on the lane.
            if i > 0 {
                let _ = writeln!(
                    s,
                    r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#d62728" stroke-width="2"/>"##,
                    x(*from),
                    leader_y + 2.0,
                    leader_y + LANE - 2.0
                );
            }
        }

        // One lane per service: running (solid) against desired (dashed).
        for (k, name) in services.iter().enumerate() {
            let y0 = svc_y + LANE * k as f64;
            let max = self
                .samples
                .iter()
                .filter_map(|o| o.services.get(name.as_str()))
                .map(|(r, d)| (*r).max(*d))
                .max()
                .unwrap_or(1)
                .max(1) as f64;
            let y = |v: u64| y0 + LANE - 5.0 - (v as f64 / max) * (LANE - 12.0);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eeeeee"/><text x="10" y="{:.1}">{}</text><text x="10" y="{:.1}" fill="#777">max {max}</text>"##,
                WIDTH - RIGHT,
                y0 + LANE,
                y0 + LANE,
                y0 + LANE / 2.0,
                esc(&short(name)),
                y0 + LANE / 2.0 + 12.0
            );
            for (which, dash, color) in [("desired", "4,3", "#999999"), ("running", "", "#1f77b4")]
            {
                let mut pts = String::new();
                let mut prev: Option<f64> = None;
                for o in &self.samples {
                    let Some((running, desired)) = o.services.get(name.as_str()) else {
                        continue;
                    };
                    let val = if which == "desired" {
                        *desired
                    } else {
                        *running
                    };
                    match prev {
                        Some(py) if py == y(val) => {}
                        Some(py) => {
                            let _ =
                                write!(pts, "{:.1},{py:.1} {:.1},{:.1} ", x(o.at), x(o.at), y(val));
                        }
                        None => {
                            let _ = write!(pts, "{:.1},{:.1} ", x(o.at), y(val));
                        }
                    }
                    prev = Some(y(val));
                }
                if let Some(py) = prev {
                    let _ = write!(pts, "{:.1},{py:.1}", x(now));
                }
                if !pts.is_empty() {
                    let _ = writeln!(
                        s,
                        r#"<polyline class="svc" points="{pts}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"/>"#
                    );
                }
            }
        }

        // Node lanes: red while down.
        for (k, name) in node_names.iter().enumerate() {
            let y0 = nodes_y + NODE_LANE * k as f64;
            let _ = writeln!(
                s,
                r#"<text x="10" y="{:.1}" fill="{}">{}</text>"#,
                y0 + 12.0,
                colors.get(name.as_str()).copied().unwrap_or("#333"),
                esc(&short(name))
            );
            let mut down_since: Option<i64> = None;
            let mut spans = Vec::new();
            for o in &self.samples {
                let down = o.nodes.get(name.as_str()).copied().unwrap_or(false);
                match (down, down_since) {
                    (true, None) => down_since = Some(o.at),
                    (false, Some(from)) => {
                        spans.push((from, o.at));
                        down_since = None;
                    }
                    _ => {}
                }
            }
            if let Some(from) = down_since {
                spans.push((from, now));
            }
            for (from, to) in spans {
                let _ = writeln!(
                    s,
                    r##"<rect class="down" x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="#d62728"><title>{} down</title></rect>"##,
                    x(from),
                    y0 + 3.0,
                    (x(to) - x(from)).max(1.0),
                    NODE_LANE - 6.0,
                    esc(name)
                );
            }
        }

        // Time axis: minutes before now.
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" stroke="black"/>"#,
            WIDTH - RIGHT
        );
        let step = [5_000, 10_000, 30_000, 60_000, 120_000]
            .into_iter()
            .find(|st| (now - start) / st <= 12)
            .unwrap_or(300_000);
        for back in (0..=(now - start) / step).map(|k| k * step) {
            let t = now - back;
            let label = match back {
                0 => "now".to_string(),
                b if b % 60_000 == 0 => format!("-{}m", b / 60_000),
                b => format!("-{}s", b / 1_000),
            };
            let _ = writeln!(
                s,
                r#"<line x1="{0:.1}" x2="{0:.1}" y1="{axis_y:.1}" y2="{1:.1}" stroke="black"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{label}</text>"#,
                x(t),
                axis_y + 4.0,
                axis_y + 16.0,
            );
        }
        s.push_str("</svg>\n");
        s
    }

    /// The services worth a lane: those with tasks, the busiest first, at
    /// most `MAX_LANES`, then by name.
    fn lanes(&self) -> Vec<String> {
        let mut peak: BTreeMap<&str, u64> = BTreeMap::new();
        for o in &self.samples {
            for (name, (r, d)) in &o.services {
                let p = peak.entry(name.as_str()).or_default();
                *p = (*p).max(*r).max(*d);
            }
        }
        let mut lanes: Vec<(&str, u64)> = peak.into_iter().collect();
        lanes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut names: Vec<String> = lanes
            .into_iter()
            .take(MAX_LANES)
            .map(|(n, _)| n.to_string())
            .collect();
        names.sort();
        names
    }
}

/// A label that fits the left margin.
fn short(name: &str) -> String {
    let mut s: String = name.chars().take(20).collect();
    if name.chars().count() > 20 {
        s.push('…');
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: i64, leader: &str, running: u64, down: bool) -> Sample {
        Sample {
            at,
            leader: Some(leader.to_string()),
            term: if leader == "m1" { 2 } else { 3 },
            services: [("web<1>".to_string(), (running, 3))].into(),
            nodes: [("m1".to_string(), down), ("m2".to_string(), false)].into(),
        }
    }

    #[test]
    fn the_window_is_bounded_and_one_sample_a_second() {
        let mut t = Timeline::default();
        for i in 0..2_000 {
            t.push(sample(i * 500, "m1", 3, false));
        }
        assert!(t.len() <= (WINDOW.as_secs() + 2) as usize, "{}", t.len());
        assert!(t.len() >= WINDOW.as_secs() as usize / 2, "{}", t.len());
    }

    #[test]
    fn leader_changes_services_and_down_nodes_are_drawn() {
        let mut t = Timeline::default();
        let now = 1_000_000;
        t.push(sample(now - 30_000, "m1", 3, false));
        t.push(sample(now - 20_000, "m1", 2, true));
        t.push(sample(now - 10_000, "m2", 3, false));
        let svg = t.render(now);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("m1 (term 2)") && svg.contains("m2 (term 3)"));
        assert_eq!(
            svg.matches(r##"stroke="#d62728" stroke-width="2""##)
                .count(),
            1
        );
        assert_eq!(svg.matches(r#"class="down""#).count(), 1);
        assert_eq!(svg.matches(r#"class="svc""#).count(), 2);
        assert!(svg.contains("web&lt;1&gt;"), "names are escaped");
        assert!(!svg.contains("web<1>"));
    }
}
