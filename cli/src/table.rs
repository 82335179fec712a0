//! Aligned text tables with optional colour, the way `kubectl get` prints them.
//!
//! Pure: the caller decides whether colour is wanted ([`Style`]); widths are counted in characters
//! before any escape sequence is added, so coloured and plain tables line up the same.

/// A colour for a cell; only used when the output is a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
    Warn,
}

/// One cell: its text and its tone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            tone: Tone::Plain,
        }
    }

    pub fn tone(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

/// Whether to colour the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour only for a terminal, and never with `--no-color` or `NO_COLOR` set (no-color.org:
    /// any non-empty value).
    pub fn decide(is_terminal: bool, no_color_flag: bool, no_color_env: Option<&str>) -> Style {
        let env_off = no_color_env.is_some_and(|v| !v.is_empty());
        Style {
            color: is_terminal && !no_color_flag && !env_off,
        }
    }

    fn paint(&self, text: &str, tone: Tone) -> String {
        let code = match tone {
            Tone::Plain => return text.to_string(),
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Warn => "33",
        };
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Renders `rows` under `headers`, columns separated by three spaces, the last column unpadded.
pub fn render(headers: &[&str], rows: &[Vec<Cell>], style: Style) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.text.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<Cell> = headers.iter().map(|h| Cell::plain(*h)).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            line.push_str(&style.paint(&cell.text, cell.tone));
            if i + 1 < columns {
                let pad = widths[i] - cell.text.chars().count() + 3;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_with_and_without_colour() {
        let rows = vec![
            vec![Cell::plain("lab"), Cell::tone("True", Tone::Good)],
            vec![Cell::plain("a-long-name"), Cell::tone("False", Tone::Bad)],
        ];
        let plain = render(&["NAME", "READY"], &rows, Style { color: false });
        assert_eq!(
            plain,
            "NAME          READY\nlab           True\na-long-name   False\n"
        );
        let coloured = render(&["NAME", "READY"], &rows, Style { color: true });
        assert!(coloured.contains("lab           \x1b[32mTrue\x1b[0m\n"));
    }

    #[test]
    fn colour_only_on_a_terminal_without_opt_out() {
        for (tty, flag, env, want) in [
            (true, false, None, true),
            (false, false, None, false),
            (true, true, None, false),
            (true, false, Some("1"), false),
            // no-color.org: an empty NO_COLOR does not count.
            (true, false, Some(""), true),
        ] {
            assert_eq!(
                Style::decide(tty, flag, env).color,
                want,
                "{tty} {flag} {env:?}"
            );
        }
    }
}
