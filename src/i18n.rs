//! The two languages every user-facing message exists in.
//!
//! Operators at the bureau work in Chinese; English is kept for everyone
//! else. The language comes from `--lang`, else from the locale (`LC_ALL`,
//! `LC_MESSAGES`, `LANG`): Chinese when it starts with `zh`, English otherwise.

use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// Picks the language from an explicit choice, else from the locale.
    pub fn detect(requested: Option<Lang>) -> Lang {
        if let Some(lang) = requested {
            return lang;
        }
        for var in ["LC_ALL", "LC_MESSAGES", "LANG"] {
            if let Ok(value) = std::env::var(var) {
                if value.is_empty() {
                    continue;
                }
                return if value.to_ascii_lowercase().starts_with("zh") {
                    Lang::Zh
                } else {
                    Lang::En
                };
            }
        }
        Lang::En
    }

    /// Chooses between the Chinese and the English form of one message.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// A message kept in both languages, for errors and findings that travel
/// through JSON reports and are rendered later in the reader's language.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl Text {
    pub fn new(zh: impl Into<String>, en: impl Into<String>) -> Text {
        Text {
            zh: zh.into(),
            en: en.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        lang.pick(&self.zh, &self.en)
    }
}

/// Names an I/O error in Chinese. The kinds an operator can act on get a
/// Chinese phrase; any other kind keeps the operating system's message.
pub fn io_error_zh(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let phrase = match error.kind() {
        ErrorKind::NotFound => "文件或目录不存在",
        ErrorKind::PermissionDenied => "没有权限",
        ErrorKind::AlreadyExists => "文件已存在",
        ErrorKind::StorageFull => "磁盘空间不足",
        ErrorKind::ReadOnlyFilesystem => "文件系统为只读",
        ErrorKind::UnexpectedEof => "文件意外结束",
        ErrorKind::TimedOut => "操作超时",
        _ => return error.to_string(),
    };
    format!("{phrase}（{error}）")
}

impl fmt::Display for Text {
    /// Shows both forms, for logs and errors printed before a language is known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.zh == self.en {
            write!(f, "{}", self.en)
        } else {
            write!(f, "{} / {}", self.zh, self.en)
        }
    }
}
