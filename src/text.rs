//! Hygiene for text that people type: what may be stored, and how it is
//! folded for case-insensitive matching the same way on both databases.

use crate::error::{AppError, AppResult};

/// Case folding done here, not in SQL: SQLite's `lower()` folds only ASCII,
/// so "ÉLODIE" and "élodie" would differ there but not on PostgreSQL.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// Characters that let text lie about itself: bidirectional overrides and
/// zero-width marks (a name shown as "admin" that is not).
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Refuses control characters (NUL above all: PostgreSQL cannot store it)
/// and deceptive marks. `multiline` lets line breaks and tabs through.
pub fn check_clean(field: &str, text: &str, multiline: bool) -> AppResult<()> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if text
        .chars()
        .any(|c| (c.is_control() && !allowed(c)) || is_deceptive(c))
    {
        return Err(AppError::bad_input(
            field,
            "contains control or invisible characters",
        ));
    }
    Ok(())
}

/// A search term as typed: trimmed, checked, folded; `None` when empty.
pub fn search_term(field: &str, raw: Option<&str>) -> AppResult<Option<String>> {
    let Some(term) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    check_clean(field, term, false)?;
    if term.chars().count() > 200 {
        return Err(AppError::bad_input(
            field,
            "a search is at most 200 characters",
        ));
    }
    Ok(Some(fold(term)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_knows_more_than_ascii() {
        assert_eq!(fold("ÉLODIE Ñandutí"), "élodie ñandutí");
    }

    #[test]
    fn nul_controls_and_bidi_marks_are_refused() {
        assert!(check_clean("name", "a\u{0}b", false).is_err());
        assert!(check_clean("name", "\u{202E}nimda", false).is_err());
        assert!(check_clean("name", "zero\u{200B}width", false).is_err());
        assert!(check_clean("description", "line one\nline two", true).is_ok());
        assert!(check_clean("title", "line one\nline two", false).is_err());
        assert!(check_clean("name", "José Ñandú", false).is_ok());
    }
}
