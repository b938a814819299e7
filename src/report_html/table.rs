//! HTML tables whose cells are escaped by default: a cell made from text is escaped when the table
//! is written, so no forgotten call can let a table name, an error message or a setting's value
//! (any of which a role may choose) into the page as markup. Markup goes in only as [`Html`], whose
//! constructor says that its caller escaped what it put in.

use super::svg::escape;

/// Markup for a cell, built by the caller from escaped parts (`<pre>`, `<b>`).
pub struct Html(String);

impl Html {
    /// `html` is markup whose every piece of text has been escaped already.
    pub fn escaped_parts(html: String) -> Html {
        Html(html)
    }

    /// `text`, escaped, inside `<tag>` (pre, b).
    pub fn wrapped(tag: &'static str, text: &str) -> Html {
        Html(format!("<{tag}>{}</{tag}>", escape(text)))
    }
}

/// One cell: text (escaped when written) or [`Html`]; its class and tooltip.
pub struct Cell {
    content: Content,
    class: Option<&'static str>,
    title: Option<String>,
}

enum Content {
    Text(String),
    Html(Html),
}

impl Cell {
    pub fn html(html: Html) -> Cell {
        Cell {
            content: Content::Html(html),
            class: None,
            title: None,
        }
    }

    /// Add `class` to the cell's (a verdict's pass, fail, none).
    pub fn class(mut self, class: &'static str) -> Cell {
        self.class = Some(class);
        self
    }

    /// A tooltip (escaped).
    pub fn title(mut self, title: &str) -> Cell {
        self.title = Some(title.to_owned());
        self
    }
}

impl<T: ToString> From<T> for Cell {
    /// Text, escaped when written: any value with a `Display`.
    fn from(text: T) -> Cell {
        Cell {
            content: Content::Text(text.to_string()),
            class: None,
            title: None,
        }
    }
}

/// A text column (left-aligned: class `name`) or a figure's (right-aligned).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Text,
    Figure,
}

/// A table: an id, maybe a caption, maybe a header row, then rows of cells in the columns' order.
pub struct Table {
    id: &'static str,
    caption: Option<String>,
    columns: Vec<(String, Align)>,
    header: bool,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with a header row (its columns added with [`text`](Self::text) and
    /// [`figure`](Self::figure)).
    pub fn new(id: &'static str) -> Table {
        Table {
            id,
            caption: None,
            columns: Vec::new(),
            header: true,
            rows: Vec::new(),
        }
    }

    /// A table of `columns` without a header row (name, value pairs).
    pub fn without_header(id: &'static str, columns: &[Align]) -> Table {
        Table {
            header: false,
            columns: columns.iter().map(|&a| (String::new(), a)).collect(),
            ..Table::new(id)
        }
    }

    pub fn caption(mut self, caption: &str) -> Table {
        self.caption = Some(caption.to_owned());
        self
    }

    /// A text column headed `name`.
    pub fn text(mut self, name: &str) -> Table {
        self.columns.push((name.to_owned(), Align::Text));
        self
    }

    /// A figure's column headed `name`.
    pub fn figure(mut self, name: &str) -> Table {
        self.columns.push((name.to_owned(), Align::Figure));
        self
    }

    /// A row, one cell per column.
    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "table {}", self.id);
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut out = format!("<table id=\"{}\">", escape(self.id));
        if let Some(caption) = &self.caption {
            out.push_str(&format!("<caption>{}</caption>", escape(caption)));
        }
        if self.header {
            out.push_str("<tr>");
            for (name, align) in &self.columns {
                match align {
                    Align::Text => {
                        out.push_str(&format!("<th class=\"name\">{}</th>", escape(name)))
                    }
                    Align::Figure => out.push_str(&format!("<th>{}</th>", escape(name))),
                }
            }
            out.push_str("</tr>");
        }
        for row in &self.rows {
            out.push_str("<tr>");
            for (cell, (_, align)) in row.iter().zip(&self.columns) {
                let class = match (align, cell.class) {
                    (Align::Text, Some(c)) if !c.is_empty() => format!("name {c}"),
                    (Align::Text, _) => "name".to_owned(),
                    (Align::Figure, Some(c)) if !c.is_empty() => c.to_owned(),
                    (Align::Figure, _) => String::new(),
                };
                out.push_str("<td");
                if !class.is_empty() {
                    out.push_str(&format!(" class=\"{class}\""));
                }
                if let Some(title) = &cell.title {
                    out.push_str(&format!(" title=\"{}\"", escape(title)));
                }
                out.push('>');
                match &cell.content {
                    Content::Text(text) => out.push_str(&escape(text)),
                    Content::Html(Html(html)) => out.push_str(html),
                }
                out.push_str("</td>");
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_escaped_and_markup_only_goes_in_as_html() {
        let mut t = Table::new("t")
            .caption("a <caption>")
            .text("name")
            .figure("n <ms>");
        t.row(vec![
            Cell::from("<script>alert(1)</script>").title("\"x\""),
            Cell::from(3).class("fail"),
        ]);
        t.row(vec![
            Cell::html(Html::wrapped("pre", "a & b")),
            Cell::from("–"),
        ]);
        let html = t.render();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<caption>a &lt;caption&gt;</caption>"));
        assert!(html.contains("<th class=\"name\">name</th><th>n &lt;ms&gt;</th>"));
        assert!(html.contains(
            "<td class=\"name\" title=\"&quot;x&quot;\">&lt;script&gt;alert(1)&lt;/script&gt;</td><td class=\"fail\">3</td>"
        ));
        assert!(html.contains("<td class=\"name\"><pre>a &amp; b</pre></td><td>–</td>"));
        let pairs = {
            let mut p = Table::without_header("p", &[Align::Text, Align::Figure]);
            p.row(vec![Cell::from("k"), Cell::from("v")]);
            p.render()
        };
        assert_eq!(
            pairs,
            "<table id=\"p\"><tr><td class=\"name\">k</td><td>v</td></tr></table>"
        );
    }
}
