//! "Did you mean" suggestions and lists of valid choices for error messages.

/// Edit distance counting an adjacent swap as one edit (optimal string alignment), by chars.
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The closest valid name, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (distance(word, v), *v))
        .filter(|(d, v)| *d <= (v.len().max(word.len()) / 3).max(1) || v.starts_with(word))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// "; did you mean `x`? valid: a, b, c" (the first part only when a name is close).
pub fn hint(word: &str, valid: &[&str]) -> String {
    let mut out = String::new();
    if let Some(best) = closest(word, valid) {
        out.push_str(&format!("; did you mean `{best}`?"));
    }
    if !valid.is_empty() {
        out.push_str(if out.is_empty() {
            "; valid: "
        } else {
            " valid: "
        });
        out.push_str(&valid.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("rleu", &["relu", "tanh", "gelu"]), Some("relu"));
        assert_eq!(closest("unitz", &["units", "activation"]), Some("units"));
        assert_eq!(closest("zzzzzz", &["relu", "tanh"]), None);
    }
}
