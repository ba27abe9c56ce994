#!/bin/sh
# Offline checks of the swanmgr.ipsec collection (make test runs this):
# every module compiles, ansible-doc renders its documentation,
# ansible-galaxy builds the collection, the example playbook passes
# --syntax-check, and the ansible-test sanity tests that need no download
# pass (the others — validate-modules, pylint, pep8, yamllint, import —
# install their requirements from the network, which this machine has not).
set -eu
cd "$(dirname "$0")"
coll=ansible_collections/swanmgr/ipsec
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ANSIBLE_LOCAL_TEMP="$tmp/local" ANSIBLE_REMOTE_TEMP="$tmp/remote" ANSIBLE_COLLECTIONS_PATH="$PWD" ANSIBLE_NOCOLOR=1
export PYTHONPYCACHEPREFIX="$tmp/pycache"

for f in $coll/plugins/modules/*.py $coll/plugins/module_utils/*.py; do
	/usr/bin/python3 -m py_compile "$f"
done
for m in $coll/plugins/modules/*.py; do
	name=$(basename "$m" .py)
	out=$(ansible-doc "swanmgr.ipsec.$name" 2>&1) || { echo "$out"; echo "ansible-doc swanmgr.ipsec.$name failed"; exit 1; }
	case "$out" in
	*"SWANMGR.IPSEC.$(echo "$name" | tr a-z A-Z)"*RETURN*) ;;
	*) echo "$out"; echo "ansible-doc swanmgr.ipsec.$name: no documentation or no RETURN"; exit 1 ;;
	esac
done
ansible-galaxy collection build --output-path "$tmp" "$coll" >/dev/null
ls "$tmp"/swanmgr-ipsec-*.tar.gz >/dev/null
ansible-playbook --syntax-check -i examples/kb-fleet/inventory.yml examples/kb-fleet/site.yml >/dev/null

# ansible-test wants the collection as the root of a git work tree.
mkdir -p "$tmp/sanity/ansible_collections/swanmgr"
cp -r "$coll" "$tmp/sanity/ansible_collections/swanmgr/ipsec"
find "$tmp/sanity" -name __pycache__ -prune -exec rm -rf {} +
cd "$tmp/sanity/ansible_collections/swanmgr/ipsec"
git init -q . && git add -A
HOME="$tmp/home" ansible-test sanity --python "$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
	--test compile --test future-import-boilerplate --test metaclass-boilerplate --test shebang \
	--test line-endings --test no-smart-quotes --test use-argspec-type-path --test empty-init \
	--test symlinks --test no-assert --test no-basestring --test no-dict-iteritems --test no-get-exception \
	--test no-illegal-filenames --test no-main-display --test no-unicode-literals --test replace-urlopen \
	--test use-compat-six --test action-plugin-docs >"$tmp/sanity.log" 2>&1 || rc=$?
grep -v 'locale\|Reviewing previous' "$tmp/sanity.log" || true
if [ "${rc:-0}" != 0 ]; then
	echo "ansible-test sanity failed (exit $rc)"
	exit 1
fi
echo "ansible: the swanmgr.ipsec collection passed its offline checks"
