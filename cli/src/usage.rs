//! Usage errors as docker's CLI reports them: its wording, `See 'shoal ...
//! --help'.`, and its exit codes (125 for a bad flag or flag value, 1 for a
//! wrong number of arguments).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;

/// docker's status for a flag it could not parse.
pub const FLAG_ERROR: u8 = 125;

/// The subcommand path the arguments name (`shoal service create`).
fn command_path<C: CommandFactory>(args: &[String]) -> (String, clap::Command) {
    let mut cmd = C::command();
    let mut path = vec![cmd.get_name().to_string()];
    let mut skip_value = false;
    for arg in args.iter().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if arg == "-H" || arg == "--host" {
            skip_value = true;
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        let Some(sub) = cmd.find_subcommand(arg).cloned() else {
            break;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    (path.join(" "), cmd)
}

fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

/// The flag's name alone, from clap's `--replicas <REPLICAS>`.
fn flag_name(arg: &str) -> String {
    arg.split([' ', '=']).next().unwrap_or(arg).to_string()
}

/// The message and exit status for a usage error; `None` for `--help`,
/// which clap prints itself.
pub fn report<C: CommandFactory>(e: &clap::Error, args: &[String]) -> Option<(String, u8)> {
    let (path, mut cmd) = command_path::<C>(args);
    let see = format!("See '{path} --help'.");
    let arg = context(e, ContextKind::InvalidArg).map(|a| flag_name(&a));
    let value = context(e, ContextKind::InvalidValue).unwrap_or_default();
    let (message, code) = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => return None,
        // `shoal service` alone: docker shows the group's help and succeeds.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            let mut cmd = cmd.bin_name(&path);
            print!("{}", cmd.render_help());
            return Some((String::new(), 0));
        }
        ErrorKind::UnknownArgument => {
            let arg = arg.unwrap_or_default();
            let message = match arg.strip_prefix('-') {
                Some(short) if !short.starts_with('-') => {
                    let letter = short.chars().next().unwrap_or('?');
                    format!("unknown shorthand flag: '{letter}' in {arg}")
                }
                _ => format!("unknown flag: {arg}"),
            };
            (format!("{message}\n{see}"), FLAG_ERROR)
        }
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let arg = arg.unwrap_or_default();
            (
                format!("invalid argument \"{value}\" for \"{arg}\" flag: {why}\n{see}"),
                FLAG_ERROR,
            )
        }
        ErrorKind::InvalidValue if value.is_empty() => {
            let arg = arg.unwrap_or_default();
            (format!("flag needs an argument: {arg}\n{see}"), FLAG_ERROR)
        }
        ErrorKind::InvalidValue => {
            let valid: Vec<String> = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => v.clone(),
                _ => Vec::new(),
            };
            let arg = arg.unwrap_or_default();
            (
                format!(
                    "invalid argument \"{value}\" for \"{arg}\" flag: expected one of {}\n{see}",
                    valid.join(", ")
                ),
                FLAG_ERROR,
            )
        }
        ErrorKind::MissingRequiredArgument
            if arg.as_deref().is_some_and(|a| a.starts_with("--")) =>
        {
            let arg = arg.unwrap_or_default();
            (
                format!("required flag \"{arg}\" not set\n{see}"),
                FLAG_ERROR,
            )
        }
        ErrorKind::MissingRequiredArgument | ErrorKind::TooFewValues => {
            let usage = cmd.render_usage().to_string();
            // clap names the leaf command only; docker the whole path.
            let usage = usage.trim_start_matches("Usage: ").trim();
            let usage = match usage.split_once(' ') {
                Some((_, rest)) => format!("{path} {rest}"),
                None => path.clone(),
            };
            let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
            (
                format!(
                    "\"{path}\" requires at least 1 argument.\n{see}\n\nUsage:  {usage}\n\n{about}"
                ),
                1,
            )
        }
        ErrorKind::InvalidSubcommand => {
            let sub = context(e, ContextKind::InvalidSubcommand).unwrap_or_default();
            (
                format!("{path}: '{sub}' is not a {path} command.\n{see}"),
                1,
            )
        }
        ErrorKind::TooManyValues | ErrorKind::ArgumentConflict | ErrorKind::NoEquals => {
            (format!("{}\n{see}", first_line(e)), FLAG_ERROR)
        }
        _ => (format!("{}\n{see}", first_line(e)), 1),
    };
    Some((message, code))
}

fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    text.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}
