//! Gateway file errors: every problem with its place, rendered with miette.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
    ThemeCharacters, ThemeStyles,
};

use crate::yaml::node::Loc;

/// One problem in a gateway file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where; `None` for problems about the file as a whole (unreadable, empty).
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    /// Lowercase, user input in backticks, no trailing period.
    pub message: String,
    /// What to do about it, when there is something useful to say.
    pub help: Option<String>,
}

impl Problem {
    pub(crate) fn at(loc: Option<Loc>, message: impl Into<String>) -> Problem {
        let l = loc.unwrap_or_default();
        Problem {
            line: loc.map(|l| l.line),
            column: loc.map(|l| l.col),
            offset: l.offset,
            len: l.len,
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in a gateway file (all of them, not only the first).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid gateway file `{name}`: {} problem{}", .problems.len(), if .problems.len() == 1 { "" } else { "s" })]
pub struct LoadError {
    pub(crate) name: String,
    pub(crate) text: Arc<str>,
    pub(crate) problems: Vec<Problem>,
}

impl LoadError {
    pub(crate) fn new(name: &str, source: &str, mut problems: Vec<Problem>) -> LoadError {
        problems.sort_by(|a, b| {
            (a.line.unwrap_or(0), a.column.unwrap_or(0), &a.message).cmp(&(
                b.line.unwrap_or(0),
                b.column.unwrap_or(0),
                &b.message,
            ))
        });
        problems.dedup();
        LoadError {
            name: name.to_string(),
            text: Arc::from(source),
            problems,
        }
    }

    /// The file name as used in diagnostics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every problem, ordered by place.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Human rendering: one block per problem, `file:line:col`, the source line and a caret.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme {
                characters: ThemeCharacters::ascii(),
                styles: ThemeStyles::none(),
            }
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false)
            .with_context_lines(1);
        let src = Arc::new(NamedSource::new(self.name.clone(), self.text.to_string()));
        let mut out = String::new();
        for p in &self.problems {
            if p.line.is_some() {
                let d = Diag {
                    problem: p,
                    source: src.clone(),
                    source_len: self.text.len(),
                };
                let mut block = String::new();
                if handler.render_report(&mut block, &d).is_ok() {
                    out.push_str(&block);
                }
            } else {
                out.push_str(&format!("  x {}: {}\n", self.name, p.message));
                if let Some(h) = &p.help {
                    out.push_str(&format!("  help: {h}\n"));
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("{self}\n"));
        out
    }
}

struct Diag<'a> {
    problem: &'a Problem,
    source: Arc<NamedSource<String>>,
    source_len: usize,
}

impl fmt::Debug for Diag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl fmt::Display for Diag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for Diag<'_> {}

impl Diagnostic for Diag<'_> {
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.as_ref())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let offset = self.problem.offset.min(self.source_len);
        let len = self
            .problem
            .len
            .min(self.source_len.saturating_sub(offset))
            .max(usize::from(offset < self.source_len));
        let span = SourceSpan::new(offset.into(), len);
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".to_string()),
            span,
        ))))
    }
}
