//! Which DynamoDB tables a command needs, from the command line or the environment.

use clap::Parser;

use super::*;

/// The tables a command reads or writes, each `None` when the command does not use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub keys: Option<String>,
    pub spend: Option<String>,
}

impl Command {
    fn uses_keys(&self) -> bool {
        !matches!(self, Self::Spend(_))
    }

    fn uses_spend(&self) -> bool {
        matches!(self, Self::List | Self::Get { .. } | Self::Spend(_))
    }
}

impl Cli {
    /// Parses a command line, the program's name first, as the binary does (for callers
    /// without `clap::Parser` in scope).
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    /// The tables the command needs, or the error naming the one that is not given.
    pub fn tables(&self) -> Result<Tables, Error> {
        let given = |table: &Option<String>| table.clone().filter(|t| !t.trim().is_empty());
        let keys = match (self.command.uses_keys(), given(&self.keys_table)) {
            (true, None) => return Err(KEYS_TABLE),
            (used, table) => table.filter(|_| used),
        };
        let spend = match (self.command.uses_spend(), given(&self.spend_table)) {
            (true, None) => return Err(SPEND_TABLE),
            (used, table) => table.filter(|_| used),
        };
        Ok(Tables { keys, spend })
    }
}
