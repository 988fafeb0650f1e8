"""A group source as pip installs one: its commands have the group name pasted in."""


def hostile_resolver(tmp_path):
    """A group source like the `local` one pip installs: its map is a shell
    command with $GROUP pasted in. A canary file proves any injection."""
    from ClusterShell.NodeUtils import GroupResolverConfig
    (tmp_path / "groups.txt").write_text("web: node[1-4]\nall: node[1-8]\n")
    conf = tmp_path / "groups.conf"
    conf.write_text("[Main]\ndefault: site\n[site]\n"
                    "map: sed -n 's/^$GROUP:\\(.*\\)/\\1/p' %s/groups.txt\n"
                    "all: sed -n 's/^all:\\(.*\\)/\\1/p' %s/groups.txt\n"
                    "list: sed -n 's/:.*//p' %s/groups.txt\n" % ((tmp_path,) * 3))
    return GroupResolverConfig(str(conf))
