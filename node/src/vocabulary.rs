//! Closed vocabularies: enums whose every value has one name, the same in the database, in
//! policy and manifest files, in JSON and on the command line. [`vocabulary!`] declares one:
//! the enum with `as_str`, `ALL`, `parse`, [`FromStr`](std::str::FromStr) (an [`UnknownWord`]
//! naming the allowed words), `Display` (the word, honouring width and alignment) and serde as
//! the same words, so that a typo is a compile error in code and a clear error in a file,
//! never a silent default. The store reads and writes them as their words
//! (`site::store`'s `sql_word!`).

/// A word that is not in a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (allowed: {allowed})")]
pub struct UnknownWord {
    /// What the vocabulary names, e.g. "annotation purpose".
    pub what: &'static str,
    pub value: String,
    /// The allowed words, comma-separated.
    pub allowed: String,
}

/// Declares a vocabulary enum: `vocabulary! { #[attrs] pub enum Name("what it names") {
/// Variant = "word", … } }`. Attributes (doc comments, extra derives such as
/// `clap::ValueEnum`) pass through to the enum and its variants.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// The value a word names, if any (see [`std::str::FromStr`] for an error).
            pub fn parse(s: &str) -> Option<Self> {
                s.parse().ok()
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::vocabulary::UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err($crate::vocabulary::UnknownWord {
                        what: $what,
                        value: s.to_string(),
                        allowed: [$($word),+].join(", "),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    vocabulary! {
        /// A test vocabulary.
        enum Colour("colour") { Red = "red", DarkBlue = "dark-blue" }
    }

    #[test]
    fn a_test_vocabulary_names_its_values() {
        assert_eq!(Colour::ALL, &[Colour::Red, Colour::DarkBlue]);
        assert_eq!(Colour::DarkBlue.to_string(), "dark-blue");
        assert_eq!(Colour::parse("red"), Some(Colour::Red));
        let e = "blue".parse::<Colour>().unwrap_err().to_string();
        assert_eq!(e, "unknown colour \"blue\" (allowed: red, dark-blue)");
        assert!(serde_json::from_str::<Colour>("\"Red\"").is_err());
    }

    use crate::annotations::model::{Kind, Purpose};
    use crate::annotations::readers::ReaderKind;
    use crate::annotations::review::ReviewState;

    /// The words of a vocabulary, comma-separated, after checking that each round-trips
    /// through `FromStr`, `Display` and serde unchanged.
    fn words<T>(all: &[T]) -> String
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + std::fmt::Display
            + std::str::FromStr
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        let mut out = Vec::new();
        for &v in all {
            let word = v.to_string();
            assert_eq!(word.parse::<T>().ok(), Some(v));
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("{word:?}"));
            assert_eq!(serde_json::from_str::<T>(&format!("{word:?}")).unwrap(), v);
            out.push(word);
        }
        out.join(",")
    }

    #[test]
    fn words_are_stable() {
        assert_eq!(words(Purpose::ALL), "read,adjudication");
        assert_eq!(words(Kind::ALL), "segmentation,boxes,label");
        assert_eq!(words(ReviewState::ALL), "draft,submitted,approved,rejected");
        assert_eq!(words(ReaderKind::ALL), "local,panel,model");
    }

    #[test]
    fn unknown_words_name_the_allowed_ones() {
        let e = "reading".parse::<Purpose>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown annotation purpose \"reading\" (allowed: read, adjudication)"
        );
        assert!(serde_json::from_str::<Kind>("\"mask\"").is_err());
        assert_eq!(Kind::parse("mask"), None);
        assert_eq!(format!("[{:<6}]", Purpose::Read), "[read  ]");
    }
}
