//! "Did you mean" suggestions and lists of valid choices for error messages.

/// Levenshtein edit distance (by chars).
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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
        out.push_str(if out.is_empty() { "; valid: " } else { " valid: " });
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
