/**
 * A word for /bin/sh (archive_command, restore_command, launcher scripts): left bare when it is
 * made only of characters the shell does not interpret, otherwise single-quoted with each `'`
 * written as `'\''`. The empty word is `''`.
 */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
