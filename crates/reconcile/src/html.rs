//! The report as one self-contained HTML page (no external assets), for
//! the engineer who opens it from an alert.

use std::fmt::Write as _;

use crate::report::{HourReport, Report};

impl Report {
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(16 * 1024);
        let verdict = if self.within_tolerance {
            ("ok", "Within tolerance")
        } else {
            ("bad", "Beyond tolerance")
        };
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>pitwall reconcile: {ds} {from} – {to}</title><style>{CSS}</style></head><body>\
             <h1>Reconciliation of <code>{ds}</code></h1>\
             <p class=\"verdict {cls}\">{text}: {bad} of {hours} hours have problems beyond {tol}.</p>\
             <p>Legacy <code>{legacy}</code> against the lake <code>{lake}</code>, event hours {from} to {to} \
             ({lf} legacy files, {ll} lines; {kf} lake files; {ms} ms).</p>",
            ds = esc(&self.dataset),
            from = esc(&self.from),
            to = esc(&self.to),
            cls = verdict.0,
            text = verdict.1,
            bad = self.totals.hours_beyond_tolerance,
            hours = self.hours.len(),
            tol = self.tolerance,
            legacy = esc(&self.legacy),
            lake = esc(&self.lake),
            lf = self.legacy_files,
            ll = self.legacy_lines,
            kf = self.lake_files,
            ms = self.millis,
        );
        self.totals_table(&mut h);
        self.hours_table(&mut h);
        for hour in self.hours.iter().filter(|r| r.problems > 0) {
            hour_details(&mut h, hour);
        }
        self.dlq_table(&mut h);
        if self.legacy_unreadable > 0 {
            let _ = write!(
                h,
                "<h2>Legacy lines that could not be placed ({})</h2><ul>",
                self.legacy_unreadable
            );
            for u in &self.legacy_unreadable_sample {
                let _ = write!(
                    h,
                    "<li><code>{}:{}</code> {}</li>",
                    esc(&u.file),
                    u.line,
                    esc(&u.reason)
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("</body></html>\n");
        h
    }

    fn totals_table(&self, h: &mut String) {
        let t = &self.totals;
        h.push_str("<h2>Totals</h2><table><tr>");
        let cells = [
            ("legacy", t.legacy),
            ("lake", t.lake),
            ("matched", t.matched),
            ("missing", t.missing),
            ("extra", t.extra),
            ("differing", t.differing),
            ("refused, in DLQ", t.refused_in_dlq),
            ("refused, not in DLQ", t.refused_not_in_dlq),
            ("lake duplicates", t.lake_duplicates),
            ("legacy duplicates", t.legacy_duplicates),
        ];
        for (name, _) in cells {
            let _ = write!(h, "<th>{name}</th>");
        }
        h.push_str("</tr><tr>");
        for (_, v) in cells {
            let _ = write!(h, "<td>{v}</td>");
        }
        h.push_str("</tr></table>");
    }

    fn hours_table(&self, h: &mut String) {
        h.push_str(
            "<h2>By event hour</h2><table><tr><th>hour</th><th>legacy</th><th>lake</th>\
             <th>matched</th><th>missing</th><th>extra</th><th>differing</th>\
             <th>refused (in DLQ / not)</th><th>lake dup.</th><th>status</th></tr>",
        );
        for r in &self.hours {
            let status = if r.within_tolerance { "ok" } else { "bad" };
            let _ = write!(
                h,
                "<tr class=\"{status}\"><td><a href=\"#h{id}\">{hour}</a></td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{status}</td></tr>",
                r.legacy,
                r.lake,
                r.matched,
                r.missing,
                r.extra,
                r.differing,
                r.refused_in_dlq,
                r.refused_not_in_dlq,
                r.lake_duplicates,
                id = anchor(&r.hour),
                hour = esc(&r.hour),
            );
        }
        h.push_str("</table>");
    }

    fn dlq_table(&self, h: &mut String) {
        h.push_str("<h2>Lake DLQ by arrival date</h2>");
        if self.dlq_by_date.is_empty() {
            h.push_str("<p>Empty.</p>");
            return;
        }
        h.push_str("<table><tr><th>date</th><th>reason</th><th>entries</th></tr>");
        for (dt, reasons) in &self.dlq_by_date {
            for (reason, n) in reasons {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
                    esc(dt),
                    esc(reason)
                );
            }
        }
        h.push_str("</table>");
    }
}

fn hour_details(h: &mut String, r: &HourReport) {
    let _ = write!(
        h,
        "<details id=\"h{}\" open><summary>{} — {} problems</summary>",
        anchor(&r.hour),
        esc(&r.hour),
        r.problems
    );
    let list = |h: &mut String, title: &str, total: u64, ids: &[String]| {
        if total == 0 {
            return;
        }
        let _ = write!(h, "<h3>{title}: {total}</h3><ul>");
        for id in ids {
            let _ = write!(h, "<li><code>{}</code></li>", esc(id));
        }
        if total as usize > ids.len() {
            let _ = write!(h, "<li>… and {} more</li>", total as usize - ids.len());
        }
        h.push_str("</ul>");
    };
    list(h, "Missing from the lake", r.missing, &r.missing_sample);
    list(h, "Extra in the lake", r.extra, &r.extra_sample);
    list(
        h,
        "Refused by the contract and not in the DLQ",
        r.refused_not_in_dlq,
        &r.refused_not_in_dlq_sample,
    );
    list(
        h,
        "Duplicated in the lake",
        r.lake_duplicates,
        &r.lake_duplicate_sample,
    );
    if r.differing > 0 {
        let _ = write!(h, "<h3>Differing: {}</h3><ul>", r.differing);
        for (f, n) in &r.differing_by_field {
            let _ = write!(h, "<li><code>{}</code>: {n}</li>", esc(f));
        }
        h.push_str("</ul><ul>");
        for d in &r.differing_sample {
            let _ = write!(
                h,
                "<li><code>{}</code>: {}</li>",
                esc(&d.event_id),
                esc(&d.fields.join(", "))
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</details>");
}

fn anchor(hour: &str) -> String {
    hour.chars().filter(char::is_ascii_digit).collect()
}

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f4f4f4}td:first-child{text-align:left}tr.bad td{background:#fde8e8}\
.verdict{font-size:1.3em;font-weight:600;padding:.5em;border-radius:4px}.verdict.ok{background:#e6f4ea}\
.verdict.bad{background:#fde8e8}code{font-size:.95em}details{margin:.5em 0}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
