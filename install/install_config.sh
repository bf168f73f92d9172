#!/bin/sh
# Installs the shipped tariffd.conf (install/tariffd.conf.in, configured by
# meson) into the configuration directory, never over a file an operator has
# edited (docs/design.md section 7). Run by `meson install` through
# meson.add_install_script:
#
#   none there     the shipped file is installed
#   the same       nothing to do
#   it differs     left alone; the shipped file goes beside it as
#                  tariffd.conf.dist (replacing an older .dist), the way
#                  dpkg leaves a .dpkg-dist
#
# usage: install_config.sh SHIPPED CONFDIR
#   CONFDIR is sysconfdir/tariffd as meson has it: absolute (prefix /usr
#   gives /etc/tariffd), or relative to the prefix. DESTDIR, or meson's
#   MESON_INSTALL_DESTDIR_PREFIX for a relative one, is put in front.
set -eu

shipped=$1
confdir=$2
case $confdir in
/*) dir=${DESTDIR:-}$confdir ;;
*) dir=${MESON_INSTALL_DESTDIR_PREFIX:?not run by meson install}/$confdir ;;
esac
target=$dir/tariffd.conf

if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
    echo "Would install $target (or $target.dist beside an edited one)"
    exit 0
fi

# put NAME: the shipped file as NAME, whole or not at all (an interrupted
# copy must not look like an operator's edit at the next install).
put() {
    cp "$shipped" "$1.tmp.$$"
    chmod 0644 "$1.tmp.$$"
    mv -f "$1.tmp.$$" "$1"
}

mkdir -p "$dir"
if [ ! -e "$target" ] && [ ! -L "$target" ]; then
    put "$target"
    echo "Installing tariffd.conf to $dir"
elif cmp -s "$shipped" "$target"; then
    echo "Keeping $target (the same as the shipped one)"
else
    put "$target.dist"
    echo "Keeping $target (it differs from the shipped one);" \
        "the shipped one is $target.dist"
fi
