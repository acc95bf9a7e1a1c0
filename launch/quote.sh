# Sourced by the launch scripts: shell quoting that stays readable.

# quote_words WORD...: the words as one line a POSIX shell reads back as them;
# words of only safe characters stay bare, others are single-quoted.
quote_words() {
  local out=() word
  for word in "$@"; do
    if [[ -n "${word}" && "${word}" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("${word}")
    else
      out+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}
