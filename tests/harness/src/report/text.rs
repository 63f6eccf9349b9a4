// SPDX-License-Identifier: GPL-2.0

//! Plain-text tables for the console (`make demo`).

/// Rows of cells as a plain-text table: columns padded to their widest cell, `|` between,
/// a `-+-` rule under the first (header) row.
pub fn fixed_width(cells: &[Vec<String>]) -> String {
    let n = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            cells
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in cells.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&sep.join("-+-"));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_under_a_rule() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = fixed_width(&[c(&["a", "bb"]), c(&["ccc", "d"])]);
        assert_eq!(t, "a   | bb\n----+---\nccc | d\n");
    }
}
