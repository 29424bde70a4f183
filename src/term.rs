//! Terminal output helpers for the human-facing commands (`doctor`,
//! `explain`): colour only when stdout is a terminal and `NO_COLOR` is not
//! set (<https://no-color.org>), aligned columns, and escaping of anything
//! that came from outside so it cannot move the cursor or forge a line.

use std::fmt::Write as _;

/// Colours used for statuses and verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Green,
    Yellow,
    Red,
    Dim,
    Bold,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Red => "31",
            Color::Dim => "2",
            Color::Bold => "1",
        }
    }
}

/// Whether to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn detect() -> Style {
        use std::io::IsTerminal;
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style::decide(tty, no_color, std::env::var("TERM").ok().as_deref())
    }

    /// The pure rule behind [`Style::detect`].
    pub fn decide(tty: bool, no_color: bool, term: Option<&str>) -> Style {
        Style {
            color: tty && !no_color && term != Some("dumb"),
        }
    }

    pub fn plain() -> Style {
        Style { color: false }
    }

    /// `text` in `color` (unchanged without colour).
    pub fn paint(&self, text: &str, color: Color) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", color.code())
        } else {
            text.to_owned()
        }
    }
}

/// Makes text from outside (key comments, options, error texts) safe to
/// print on one terminal line: control characters become `\xNN` escapes.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push(' '),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Display width of a cell (characters; keyward prints no wide glyphs).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// One cell: text and an optional colour applied after padding, so escape
/// sequences never disturb the alignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Cell {
        Cell {
            text: sanitize(&text.into()),
            color: None,
        }
    }

    pub fn colored(text: impl Into<String>, color: Color) -> Cell {
        Cell {
            text: sanitize(&text.into()),
            color: Some(color),
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::new(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::new(s)
    }
}

/// A table of left-aligned columns separated by two spaces. Columns listed
/// in `right` are right-aligned (numbers). The last column is never padded.
#[derive(Debug, Default, Clone)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<Cell>>,
    right: Vec<usize>,
    indent: usize,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn header(mut self, cols: &[&str]) -> Table {
        self.header = Some(cols.iter().map(|c| c.to_string()).collect());
        self
    }

    pub fn right_align(mut self, col: usize) -> Table {
        self.right.push(col);
        self
    }

    pub fn indent(mut self, n: usize) -> Table {
        self.indent = n;
        self
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders every row as one line (each ending in `\n`).
    pub fn render(&self, style: &Style) -> String {
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(self.header.iter().map(Vec::len))
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; ncols];
        if let Some(h) = &self.header {
            for (i, c) in h.iter().enumerate() {
                widths[i] = widths[i].max(width(c));
            }
        }
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(width(&c.text));
            }
        }
        let mut out = String::new();
        let pad = " ".repeat(self.indent);
        let mut line = |cells: &[Cell]| {
            let mut l = pad.clone();
            let last = cells.len().saturating_sub(1);
            for (i, c) in cells.iter().enumerate() {
                let fill = widths[i].saturating_sub(width(&c.text));
                let painted = match c.color {
                    Some(col) => style.paint(&c.text, col),
                    None => c.text.clone(),
                };
                if self.right.contains(&i) {
                    l.push_str(&" ".repeat(fill));
                    l.push_str(&painted);
                } else {
                    l.push_str(&painted);
                    if i != last {
                        l.push_str(&" ".repeat(fill));
                    }
                }
                if i != last {
                    l.push_str("  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        if let Some(h) = &self.header {
            let cells: Vec<Cell> = h
                .iter()
                .map(|t| Cell::colored(t.as_str(), Color::Bold))
                .collect();
            line(&cells);
        }
        for r in &self.rows {
            line(r);
        }
        out
    }
}

/// A duration in seconds as a short human string: `41s`, `5m`, `3h12m`, `4d`.
pub fn human_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => {
            let m = s % 3600 / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h{m}m", s / 3600)
            }
        }
        s => {
            let h = s % 86400 / 3600;
            if h == 0 {
                format!("{}d", s / 86400)
            } else {
                format!("{}d{h}h", s / 86400)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_rule() {
        assert!(Style::decide(true, false, Some("xterm")).color);
        assert!(!Style::decide(false, false, Some("xterm")).color);
        assert!(!Style::decide(true, true, Some("xterm")).color);
        assert!(!Style::decide(true, false, Some("dumb")).color);
        assert_eq!(Style::plain().paint("ok", Color::Green), "ok");
        assert_eq!(
            Style { color: true }.paint("ok", Color::Green),
            "\x1b[32mok\x1b[0m"
        );
    }

    #[test]
    fn table_aligns_and_colour_does_not_shift_columns() {
        let mut t = Table::new().header(&["A", "BB", "C"]).right_align(1);
        t.row(vec![
            Cell::colored("fail", Color::Red),
            "7".into(),
            "x".into(),
        ]);
        t.row(vec!["ok".into(), "123".into(), "last column".into()]);
        let plain = t.render(&Style::plain());
        assert_eq!(
            plain,
            "A      BB  C\nfail    7  x\nok    123  last column\n"
        );
        let colored = t.render(&Style { color: true });
        let stripped = colored
            .replace("\x1b[31m", "")
            .replace("\x1b[1m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
    }

    #[test]
    fn outside_text_is_escaped() {
        assert_eq!(sanitize("a\x1b[31mb\nc\td"), "a\\x1b[31mb\\x0ac d");
        assert_eq!(Cell::new("x\ry").text, "x\\x0dy");
    }

    #[test]
    fn ages() {
        assert_eq!(human_age(41), "41s");
        assert_eq!(human_age(300), "5m");
        assert_eq!(human_age(3600), "1h");
        assert_eq!(human_age(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(human_age(4 * 86400), "4d");
        assert_eq!(human_age(86400 + 7200), "1d2h");
    }
}
