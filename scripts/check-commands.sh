#!/usr/bin/env bash
# Checks that every external command the tests, the demo, the bench and the packaging call
# is provided by a package scripts/setup.sh installs (or an Essential package), so a fresh
# machine runs them all (a machine where a tool happened to be installed by hand once hid
# netavark's missing iptables). Three checks, each failing with a one-line reason:
#   1. every command called by a script (first words of commands) or a Command::new("...")
#      in the crates is listed in scripts/commands.list;
#   2. its package is in setup.sh's PACKAGES (or a direct dependency of one) or Essential;
#   3. that package is installed and ships the command in a bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-commands: $*" >&2; exit 1; }

declare -A package_of
while read -r command package _; do
  [[ -z "$command" || $command == \#* ]] && continue
  package_of[$command]=$package
done <scripts/commands.list

# setup.sh's PACKAGES=( ... ) block, without comments.
mapfile -t installed < <(sed -n '/^PACKAGES=(/,/^)/p' scripts/setup.sh | sed 's/#.*//; s/PACKAGES=(//; s/)//' | tr -s ' \t' '\n' | sed '/^$/d')
[[ ${#installed[@]} -gt 0 ]] || fail "found no PACKAGES=( ... ) list in scripts/setup.sh"
declare -A by_setup
for package in "${installed[@]}"; do by_setup[$package]=1; done
# ... and what those depend on directly (python3 -> python3-minimal ships /usr/bin/python3).
while read -r package; do
  by_setup[$package]=1
done < <(dpkg-query -W -f='${Depends},${Pre-Depends}\n' "${installed[@]}" 2>/dev/null |
  tr ',|' '\n\n' | sed -E 's/\(.*//; s/:any//; s/[[:space:]]//g' | sed '/^$/d' | sort -u)

# 1. Called but not listed. Scripts: words at the start of a command (line start, after | ; & ( $( ` !
# or then/do/else/exec/if/while/until/xargs) that name an executable file, minus the script's own
# functions and variable assignments.
called=()
for script in scripts/*.sh bench/*.sh packaging/*.sh .ci/run; do
  [[ -e $script ]] || continue
  functions=$(grep -oE '^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*\(\)' "$script" | tr -d ' \t()' || true)
  while read -r word; do
    [[ -z $word || $word == */* ]] && continue
    grep -qxF -- "$word" <<<"$functions" && continue
    [[ $(type -t "$word" 2>/dev/null) == file ]] && called+=("$word $script")
  done < <(sed '/^PACKAGES=(/,/^)/d; s/#.*$//' "$script" |
    grep -oE '(^|[|;&(`!]|\$\(|(then|do|else|exec|if|while|until|xargs)[[:space:]])[[:space:]]*[A-Za-z0-9_.+-]+([^A-Za-z0-9_.+=-]|$)' |
    sed -E 's/[^A-Za-z0-9_.+-]$//; s/.*[[:space:]|;&(`!]//; s/^(then|do|else|exec|if|while|until|xargs)$//')
done
while read -r file word; do
  called+=("$word $file")
done < <(grep -rnoE --include='*.rs' 'Command::new\("[A-Za-z0-9_.+-]+"\)' fuse hooks plugin tests bench |
  sed -E 's/^([^:]+):[0-9]+:Command::new\("(.*)"\)$/\1 \2/')
for entry in "${called[@]}"; do
  word=${entry%% *}
  [[ -n ${package_of[$word]:-} ]] || fail "${entry#* } calls '$word', which scripts/commands.list does not map to a Debian package"
done

# 2 and 3. Listed commands come from packages setup.sh installs, and those ship them.
declare -A files_of
for command in "${!package_of[@]}"; do
  package=${package_of[$command]}
  [[ $package == - ]] && continue
  if [[ -z ${by_setup[$package]:-} ]]; then
    essential=$(dpkg-query -W -f='${Essential}' "$package" 2>/dev/null || true)
    [[ $essential == yes ]] || fail "'$command' comes from package $package, which scripts/setup.sh does not install (add it to PACKAGES)"
    by_setup[$package]=1
  fi
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || fail "package $package (for '$command') is not installed: run scripts/setup.sh"
  # Shipped by name (a path: exactly there), or through a symlink (alternatives: iptables ->
  # xtables-nft-multi). One dpkg -L per package.
  [[ -n ${files_of[$package]:-} ]] || files_of[$package]=$(dpkg -L "$package" 2>/dev/null || true)
  shipped=${files_of[$package]}
  if [[ $command == /* ]]; then
    grep -xF "$command" >/dev/null <<<"$shipped" || fail "package $package ships no $command (fix scripts/commands.list)"
    continue
  fi
  grep -E "/s?bin/$command\$" >/dev/null <<<"$shipped" && continue
  for dir in /usr/sbin /usr/bin /sbin /bin; do
    [[ -x $dir/$command ]] || continue
    real=$(readlink -f "$dir/$command")
    grep -xF -e "$real" -e "${real#/usr}" >/dev/null <<<"$shipped" && continue 2
  done
  fail "package $package ships no '$command' (fix scripts/commands.list)"
done
echo "check-commands: ${#package_of[@]} commands, each from a package setup.sh installs"
