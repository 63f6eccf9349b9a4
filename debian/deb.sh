# shellcheck shell=bash
# Helpers for building migtime's .deb packages with dpkg-deb from a staging
# directory (scripts/build-debian-module, scripts/build-debian-companion).
# Source it after scripts/lib.sh; see debian/README for what each package
# contains and why it is built this way (no debhelper on the host).

DEB_DIR="$MIGTIME_ROOT/debian"
# lintian wants a mail address that is not on localhost; override for a real
# upload.
DEB_MAINTAINER=${DEB_MAINTAINER:-migtime developers <migtime@example.org>}

# deb_git_version: <commit date>.<short hash> of the clone's HEAD (0 outside git).
deb_git_version() {
	git -C "$MIGTIME_ROOT" log -1 --format='%cd.%h' --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0
}

# deb_subst FILE KEY=VALUE...: FILE with every @KEY@ replaced, on stdout.
deb_subst() {
	local file=$1 kv expr=(-e '')
	shift
	for kv in "$@"; do
		expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${expr[@]}" "$file"
}

# deb_docs STAGE PKG VERSION: the copyright file and a one-entry changelog in
# /usr/share/doc/PKG, dated like the commit: changelog.Debian.gz when VERSION
# has a Debian revision (the module's ends in the kernel's -1~bpo13+1 as
# -1.bpo13+1), changelog.gz for a native version.
deb_docs() {
	local stage=$1 pkg=$2 ver=$3 doc date commit log=changelog.gz
	case "$ver" in *-*) log=changelog.Debian.gz ;; esac
	doc="$stage/usr/share/doc/$pkg"
	install -D -m 0644 "$DEB_DIR/copyright" "$doc/copyright"
	date=$(git -C "$MIGTIME_ROOT" log -1 --format=%cD 2>/dev/null || date -R)
	commit=$(git -C "$MIGTIME_ROOT" log -1 --format=%H 2>/dev/null || echo unknown)
	{
		printf '%s (%s) unstable; urgency=medium\n\n' "$pkg" "$ver"
		printf '  * Built from migtime commit %s.\n\n' "$commit"
		printf ' -- %s  %s\n' "$DEB_MAINTAINER" "$date"
	} | gzip -9n >"$doc/$log"
	chmod 0644 "$doc/$log"
}

# deb_script STAGE NAME TEMPLATE KEY=VALUE...: a maintainer script from a
# template in debian/ (@KEY@ substituted).
deb_script() {
	local stage=$1 name=$2 tmpl=$3
	shift 3
	mkdir -p "$stage/DEBIAN"
	deb_subst "$DEB_DIR/$tmpl" "$@" >"$stage/DEBIAN/$name"
	chmod 0755 "$stage/DEBIAN/$name"
}

# deb_build STAGE DEB: md5sums, conffiles (everything under /etc), the
# control file's Installed-Size, then dpkg-deb (root-owned, xz, reproducible).
deb_build() {
	local stage=$1 deb=$2 size
	(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
		xargs -0 -r md5sum) >"$stage/DEBIAN/md5sums"
	chmod 0644 "$stage/DEBIAN/md5sums"
	if [ -d "$stage/etc" ]; then
		(cd "$stage" && find etc -type f -printf '/%p\n' | sort) >"$stage/DEBIAN/conffiles"
		chmod 0644 "$stage/DEBIAN/conffiles"
	fi
	size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
	sed -i "s/@INSTALLED_SIZE@/$size/" "$stage/DEBIAN/control"
	chmod 0644 "$stage/DEBIAN/control"
	find "$stage" -type d -exec chmod 0755 {} +
	# The commit's time for the archive and as the files' latest mtime: the
	# same commit gives the same bytes (the image cache keys on them).
	run_logged "$LOGS/dpkg-deb-$(basename "$deb").log" env \
		SOURCE_DATE_EPOCH="$(git -C "$MIGTIME_ROOT" log -1 --format=%ct 2>/dev/null || date +%s)" \
		dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb"
}
