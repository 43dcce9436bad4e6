//! Container-name globs: the `containers` selector of a policy entry.
//!
//! A [`Glob`] supports `*`, `?`, `[abc]`, `[a-z]` and `[!x]`, and is checked
//! when built: a pattern that could never match a Docker container name
//! (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) is an error, not a silent no-op. Matching
//! is an iterative wildcard match with one backtrack point, so it is
//! `O(pattern × name)` and never exponential. No regex engine is involved.

use std::fmt;

/// A validated container-name glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as written, for display.
    pattern: String,
    /// The compiled pattern; consecutive `*` are collapsed into one.
    tokens: Vec<Token>,
}

/// One element of a compiled glob; all but `AnyRun` match exactly one char.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    AnyChar,
    /// `*`
    AnyRun,
    /// `[...]`: inclusive char ranges (a single char `c` is `(c, c)`).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a pattern is not a valid container-name glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty pattern")]
    Empty,
    #[error("names are matched without docker's leading '/'")]
    LeadingSlash,
    #[error("{0:?} cannot occur in a container name")]
    BadChar(char),
    #[error("'[' at character {0} is never closed")]
    UnclosedClass(usize),
    #[error("empty character class at character {0}")]
    EmptyClass(usize),
    #[error("range '{0}-{1}' is reversed")]
    ReversedRange(char, char),
}

impl Glob {
    /// Compile `pattern`, rejecting anything that could never match a name.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.starts_with('/') {
            return Err(GlobError::LeadingSlash);
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            let token = match c {
                '*' if tokens.last() == Some(&Token::AnyRun) => None,
                '*' => Some(Token::AnyRun),
                '?' => Some(Token::AnyChar),
                '[' => {
                    let (class, next) = parse_class(&chars, i)?;
                    i = next;
                    tokens.push(class);
                    continue;
                }
                c if is_name_char(c) => Some(Token::Literal(c)),
                c => return Err(GlobError::BadChar(c)),
            };
            tokens.extend(token);
            i += 1;
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `name` matches. A leading `/` (as the Docker API
    /// reports names) is ignored, since a pattern can never contain one.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_prefix('/').unwrap_or(name);
        // Positions in `name` are byte offsets at char boundaries: no copy
        // of the name, which is matched once per container and entry at
        // every plan.
        let next = |n: usize| name[n..].chars().next();
        let (mut p, mut n) = (0, 0);
        // After the last `*` seen: (pattern index past it, name offset it resumes from).
        let mut resume: Option<(usize, usize)> = None;
        while let Some(c) = next(n) {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    resume = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                Some(token) if token.matches_char(c) => {
                    p += 1;
                    n += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last `*` swallow one more char, or fail.
            let Some((star_p, star_n)) = resume else {
                return false;
            };
            let swallowed = next(star_n).map_or(1, char::len_utf8);
            resume = Some((star_p, star_n + swallowed));
            p = star_p;
            n = star_n + swallowed;
        }
        self.tokens
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|t| *t == Token::AnyRun))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyChar | Token::AnyRun => true,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// Parse the class opening at `chars[open]` (a `[`); returns the token and
/// the index just past its closing `]`.
fn parse_class(chars: &[char], open: usize) -> Result<(Token, usize), GlobError> {
    let mut i = open + 1;
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(GlobError::UnclosedClass(open + 1));
        };
        if c == ']' {
            if ranges.is_empty() {
                return Err(GlobError::EmptyClass(open + 1));
            }
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        if !is_name_char(c) {
            return Err(GlobError::BadChar(c));
        }
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                if !is_name_char(hi) {
                    return Err(GlobError::BadChar(hi));
                }
                if hi < c {
                    return Err(GlobError::ReversedRange(c, hi));
                }
                ranges.push((c, hi));
                i += 3;
            }
            _ => {
                ranges.push((c, c));
                i += 1;
            }
        }
    }
}

/// Whether `c` can occur in a Docker container name.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern).expect("valid glob")
    }

    #[test]
    fn literal_matches_only_itself() {
        let g = glob("db");
        assert!(g.matches("db"));
        assert!(!g.matches("db1"));
        assert!(!g.matches("d"));
        assert!(!g.matches(""));
        assert!(!g.matches("DB"));
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        let g = glob("pg-*");
        assert!(g.matches("pg-"));
        assert!(g.matches("pg-main"));
        assert!(!g.matches("pg"));
        assert!(!g.matches("xpg-1"));
        assert!(glob("*").matches("anything.at_all-1"));
        assert!(glob("*-db-*").matches("shop-db-1"));
        assert!(!glob("*-db-*").matches("shop-db"));
        assert!(glob("a**b").matches("ab"));
    }

    /// Positions in a name are byte offsets: a `*` that backtracks over a
    /// character of several bytes, and a `?` that matches one, step over
    /// the whole character.
    #[test]
    fn names_of_several_byte_characters_match_by_character() {
        assert!(glob("*-b*").matches("ça-bé"));
        assert!(glob("?a-*b").matches("ça-ééb"));
        assert!(!glob("?-*b").matches("ça-ééb"));
        assert!(glob("*?").matches("é"));
        assert!(!glob("*??").matches("é"));
        assert!(glob("*[!a]").matches("aé"));
    }

    #[test]
    fn question_mark_matches_one_char() {
        let g = glob("web-?");
        assert!(g.matches("web-1"));
        assert!(!g.matches("web-"));
        assert!(!g.matches("web-12"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        let g = glob("web-[0-9]");
        assert!(g.matches("web-7"));
        assert!(!g.matches("web-x"));
        let g = glob("[abc]x");
        assert!(g.matches("bx"));
        assert!(!g.matches("dx"));
        let g = glob("web-[!0-9]");
        assert!(g.matches("web-a"));
        assert!(!g.matches("web-5"));
        let g = glob("a[-_.]b");
        assert!(g.matches("a-b"));
        assert!(g.matches("a.b"));
        assert!(!g.matches("axb"));
        assert!(glob("a[x-]").matches("a-"));
    }

    #[test]
    fn leading_slash_of_docker_names_is_ignored() {
        assert!(glob("db").matches("/db"));
        assert!(glob("d*").matches("/db"));
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let g = glob("*a*a*a*a*a*a*a*a*a*a*a*a*b");
        let name = "a".repeat(5000);
        assert!(!g.matches(&name));
        assert!(g.matches(&format!("{name}b")));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        let cases = [
            ("", GlobError::Empty),
            ("/db", GlobError::LeadingSlash),
            ("web/1", GlobError::BadChar('/')),
            ("my db", GlobError::BadChar(' ')),
            ("db:5432", GlobError::BadChar(':')),
            ("web-[0-9", GlobError::UnclosedClass(5)),
            ("x[!", GlobError::UnclosedClass(2)),
            ("a[]", GlobError::EmptyClass(2)),
            ("a[!]", GlobError::EmptyClass(2)),
            ("[z-a]", GlobError::ReversedRange('z', 'a')),
            ("[a/]", GlobError::BadChar('/')),
            ("[a-/]", GlobError::BadChar('/')),
            ("[^a]", GlobError::BadChar('^')),
        ];
        for (pattern, want) in cases {
            assert_eq!(Glob::new(pattern), Err(want), "pattern {pattern:?}");
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let msg = |p: &str| Glob::new(p).err().map(|e| e.to_string());
        assert_eq!(
            msg("web/1").as_deref(),
            Some("'/' cannot occur in a container name")
        );
        assert_eq!(
            msg("a[bc").as_deref(),
            Some("'[' at character 2 is never closed")
        );
        assert_eq!(
            msg("[]").as_deref(),
            Some("empty character class at character 1")
        );
    }
}
