r"""Unit-name test vectors taken from systemd's own test suite.

Source (vectors): https://github.com/systemd/systemd  src/test/test-unit-name.c
  at commit 052d4514f5868ddcbe5ddf7a447fc1a0d49b8258 (the version stored in
  the search index; a recent main-branch version). Test functions:
  TEST(unit_name_is_valid), TEST(unit_name_from_path),
  TEST(unit_name_from_path_instance), TEST(unit_name_escape),
  TEST(unit_instance_is_valid), TEST(unit_prefix_is_valid).

Source (the rules written in the comments below): src/basic/unit-name.c,
  src/basic/path-util.c(.h), src/basic/unit-def.c, src/basic/unit-name.h.
  The systemd/systemd copies of those files in the index were old (2015-2018),
  so the implementation was read from redhat-plumbers/systemd-rhel9 (the v252
  branch): unit-name.c @ 4802e33131b3cc8023922114a22131aef8bf312f,
  path-util.c @ 86eae9a1dade5ba15990196b1459e1394bf0a632,
  unit-def.c @ f23d0328e563fa5534377297153daa098664147f.
  Also read: a newer upstream path_simplify_full() (see "VERSION DIFFERENCE"
  below).

Every vector here was checked against systemd 252 (Debian 252.39,
/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so on the machine
where this file was written). The checks called unit_name_is_valid(),
unit_name_from_path(), unit_name_from_path_instance(), unit_name_escape(),
unit_instance_is_valid() and unit_prefix_is_valid() through ctypes, and all
of them matched.

All strings are plain Python literals. They hold the same characters as the
C string literals. Backslashes are doubled exactly as in the C source: C's
"\\x2d" (the four characters backslash, 'x', '2', 'd') is written "\\x2d"
here too. In the comments, escapes are shown as the characters themselves,
e.g. \x2d.
"""

# ---------------------------------------------------------------------------
# Validity rules: unit_name_is_valid(name, flags)        (src/basic/unit-name.c)
# ---------------------------------------------------------------------------
# Flags: UNIT_NAME_PLAIN=1 ("foo.service"), UNIT_NAME_TEMPLATE=2
# ("foo@.service"), UNIT_NAME_INSTANCE=4 ("foo@bar.service"),
# UNIT_NAME_ANY = PLAIN|TEMPLATE|INSTANCE. The name is valid if it matches ANY
# of the requested kinds. flags == 0 always gives False.
#
#  1. Empty string -> invalid.
#  2. strlen(name) >= UNIT_NAME_MAX (256) -> invalid. So the maximum is
#     255 bytes (UTF-8 bytes, not characters), and that count includes the
#     ".suffix".
#  3. e = the LAST '.' in the name. It must exist and must not be the first
#     character (".service" is invalid).
#  4. The text after the last '.' must be exactly one of the unit types. The
#     match is case-sensitive: service, socket, target, device, mount,
#     automount, swap, timer, path, slice, scope. ("snapshot" and "busname"
#     were removed long ago; "foo.Service" and "foo.waldo" are invalid.)
#  5. Every byte before that last '.' must be in "@" + VALID_CHARS, where
#        VALID_CHARS = digits 0-9, ASCII letters a-z A-Z, and the five
#                      characters  :  -  _  .  \  (backslash).
#     Non-ASCII bytes, spaces, '%', '/', '#', '*' and so on are not allowed. '.' IS
#     allowed before the suffix, so "foo.target.service" and "foo..service"
#     are valid.
#  6. at = the FIRST '@'. If it is the first character ("@.service",
#     "@piep.service"), the name is invalid.
#  7. Classification:
#       PLAIN    : there is no '@'
#       INSTANCE : there is an '@' and at least one character between the
#                  first '@' and the last '.' (e > at+1)
#       TEMPLATE : the first '@' comes directly before the last '.'
#                  (e == at+1)
#
# What that means for the parts:
#   * Prefix = everything before the first '@' (or before the last '.' if
#     there is no '@'). It must be non-empty. It can never contain '@'.
#     unit_prefix_is_valid() allows only VALID_CHARS, without '@'. It MAY
#     start with '.', '-', '_' or ':' (".test.service" and "-.mount" are
#     valid).
#   * Instance = everything between the first '@' and the last '.'.
#     '@' IS ALLOWED INSIDE THE INSTANCE: "foo@bar@bar.service" is a valid
#     INSTANCE name whose instance is "bar@bar". unit_instance_is_valid()
#     allows "@" + VALID_CHARS (its test accepts "@f_oo123.Stuff").
#     Some results that follow from this (checked against 252):
#     "foo@@.service" is an INSTANCE (instance "@"), not a TEMPLATE, and
#     "foo@.service@.service" is a valid INSTANCE (instance ".service@").
#     The instance may also contain '.', ':', '-', '_' and backslash.
#   * Suffix = "." + a unit type, as in rule 4. unit_suffix_is_valid(s)
#     requires s[0] == '.' and the rest to be a known type.
#   * Unresolved specifiers ("%i", "%%i") are invalid because '%' is not
#     allowed. Paths such as "foo.target.wants/plain.service" are invalid
#     because '/' is not allowed.

UNIT_NAME_FLAG_BITS = {"plain": 1, "template": 2, "instance": 4, "any": 7}

# (name, flags, expected). flags is "plain", "instance", "template" or "any".
# systemd's UNIT_NAME_INSTANCE|UNIT_NAME_TEMPLATE is written as
# "instance|template". These are all 39 cases of TEST(unit_name_is_valid), in
# source order.
UNIT_NAME_VALID = [
    ("foo.service", "any", True),
    ("foo.service", "plain", True),
    ("foo.service", "instance", False),
    ("foo.service", "template", False),
    ("foo.service", "instance|template", False),

    ("foo@bar.service", "any", True),
    ("foo@bar.service", "plain", False),
    ("foo@bar.service", "instance", True),
    ("foo@bar.service", "template", False),
    ("foo@bar.service", "instance|template", True),

    ("foo@bar@bar.service", "any", True),
    ("foo@bar@bar.service", "plain", False),
    ("foo@bar@bar.service", "instance", True),
    ("foo@bar@bar.service", "template", False),
    ("foo@bar@bar.service", "instance|template", True),

    ("foo@.service", "any", True),
    ("foo@.service", "plain", False),
    ("foo@.service", "instance", False),
    ("foo@.service", "template", True),
    ("foo@.service", "instance|template", True),
    (".test.service", "plain", True),
    (".test@.service", "template", True),
    ("_strange::::.service", "any", True),

    (".service", "any", False),
    ("", "any", False),
    ("foo.waldo", "any", False),
    ("@.service", "any", False),
    ("@piep.service", "any", False),

    ("user@1000.slice", "any", True),
    ("user@1000.slice", "instance", True),
    ("user@1000.slice", "template", False),

    ("foo@%i.service", "any", False),
    ("foo@%i.service", "instance", False),
    ("foo@%%i.service", "instance", False),
    ("foo@%%i%f.service", "instance", False),
    ("foo@%F.service", "instance", False),

    ("foo.target.wants/plain.service", "any", False),
    ("foo.target.conf/foo.conf", "any", False),
    ("foo.target.requires/plain.socket", "any", False),
]

# From TEST(unit_instance_is_valid): (instance_string, expected). '@' is allowed.
UNIT_INSTANCE_IS_VALID = [
    ("fooBar", True),
    ("foo-bar", True),
    ("foo.stUff", True),
    ("fOo123.stuff", True),
    ("@f_oo123.Stuff", True),
    ("$\u00a2\u00a3", False),  # "$¢£"
    ("", False),
    ("foo bar", False),
    ("foo/bar", False),
]

# From TEST(unit_prefix_is_valid): (prefix_string, expected). '@' is NOT allowed.
UNIT_PREFIX_IS_VALID = [
    ("fooBar", True),
    ("foo-bar", True),
    ("foo.stUff", True),
    ("fOo123.stuff", True),
    ("foo123.Stuff", True),
    ("$\u00a2\u00a3", False),  # "$¢£"
    ("", False),
    ("foo bar", False),
    ("foo/bar", False),
    ("@foo-bar", False),
]

# ---------------------------------------------------------------------------
# Escaping: unit_name_escape(s)  (do_escape() in src/basic/unit-name.c)
# ---------------------------------------------------------------------------
# The escaping works byte by byte on the C string (UTF-8 bytes):
#   * If the FIRST byte is '.', it becomes "\x2e". This applies only to the
#     first byte ("do not create units with a leading '.', like for
#     "/.dotdir" mount points"). A '.' anywhere else is kept.
#   * '/'                          -> '-'
#   * '-' and '\'                 -> "\x2d" and "\x5c"
#   * any byte not in VALID_CHARS  -> "\x" + 2 LOWERCASE hex digits. This
#     covers '@' (\x40), ' ' (\x20), '%' (\x25), '+' (\x2b) and
#     every non-ASCII byte: "ü" (c3 bc) -> "\xc3\xbc".
#   * [A-Za-z0-9:_.]               -> kept unchanged
# So the output never contains '@', and every '-' in it stands for a '/' in
# the input.

# (input, escaped), from TEST(unit_name_escape). This is its only vector.
UNIT_NAME_ESCAPE = [
    ("ab+-c.a/bc@foo.service", "ab\\x2b\\x2dc.a-bc\\x40foo.service"),
]

# ---------------------------------------------------------------------------
# Path -> unit name: unit_name_from_path(path, suffix) and
# unit_name_path_escape(path)
# ---------------------------------------------------------------------------
# unit_name_path_escape(path):
#   1. path_simplify(): merges repeated '/', drops "." components, drops
#      trailing '/', and keeps one leading '/' if the path is absolute.
#      ".." components are KEPT. If nothing is left of a relative path, the
#      result is ".". If a component is longer than NAME_MAX (255 bytes),
#      simplification stops at that point, and step 3 then fails.
#        "/foo/./bar" -> "/foo/bar";  "/waldo/quuix/" -> "/waldo/quuix";
#        "///" -> "/";  "./" -> "."
#   2. If the result is "" or "/" (empty_or_root), the escaped name is "-".
#      That is the root rule: "", "/" and "///" all give "-", and the unit
#      is "-.mount".
#   3. Otherwise the path must pass path_is_normalized(), or the call fails
#      with -EINVAL (None below). That requires:
#        - no ".." component (so "/foo/../bar", "..", "/foo/.." fail),
#        - every component <= 255 bytes and total length < PATH_MAX (4096),
#        - not ".", no "./" prefix, no "/./", no trailing "/.", no "//".
#          After step 1 only "." can still trigger these (so "." and "./"
#          fail).
#   4. Trailing '/' characters are removed, then leading '/' characters are
#      skipped, and unit_name_escape() (above) is applied. '/' becomes '-';
#      '-', '\', '@' and anything outside [A-Za-z0-9:_.] become \xNN;
#      a leading '.' of the first component becomes \x2e. A '.' at the
#      start of a later component is NOT escaped ("/foo/.bar" ->
#      "foo-.bar").
#   RELATIVE PATHS ARE NOT REFUSED. Nothing checks that the path is
#   absolute: "foo/bar" -> "foo-bar" and "./foo" -> "foo". (systemctl
#   mangling only sends absolute paths down this route.)
#
# unit_name_from_path(path, suffix):
#   * suffix must be "." + a valid unit type, else -EINVAL (for example
#     ".waldi", or "mount" without the dot).
#   * s = path_escape(path) + suffix
#   * If len(s) >= 256, s is hashed (unit_name_hash_long): keep the first
#     256-1-len(type)-16-2 bytes of s (232 for "mount"), then append "_",
#     16 lowercase hex digits, and the suffix. The result is always exactly
#     255 bytes. The hex digits are the little-endian bytes of
#     siphash24(s + "\0") (the NUL byte is hashed too) with key
#     ec f2 37 fb 58 32 4a 32 84 9f 06 9b 0d 21 eb 9a. The cut is byte-wise
#     and may split a \xNN escape. Hashed names cannot be turned back
#     into paths.
#   * The result must pass unit_name_is_valid(PLAIN). It always does.
# unit_name_from_path_instance(prefix, path, suffix):
#   * prefix must pass unit_prefix_is_valid (no '@'), and the suffix must
#     be valid.
#   * The result is prefix + "@" + path_escape(path) + suffix. If it is
#     >= 256 bytes the call fails with -ENAMETOOLONG. There is NO hashing
#     in this variant.
#
# VERSION DIFFERENCE: newer upstream path_simplify_full() drops ".."
# components at the very START of an absolute path
# ("/../foo/bar becomes /foo/bar"). The upstream test file above relies on
# this: unit_name_mangle_with_suffix("/../dev") == "dev.mount". In systemd
# 252 (Debian 12, the version checked here), "/../foo" and "/.." still fail
# with -EINVAL from unit_name_from_path. Only the LOCAL_252 list below
# covers this case; no vector in UNIT_NAME_FROM_PATH depends on it.

# (path, suffix, expected_unit_name or None for -EINVAL): all 9 vectors of
# TEST(unit_name_from_path).
UNIT_NAME_FROM_PATH = [
    ("/waldo", ".mount", "waldo.mount"),
    ("/waldo/quuix", ".mount", "waldo-quuix.mount"),
    ("/waldo/quuix/", ".mount", "waldo-quuix.mount"),
    ("", ".mount", "-.mount"),
    ("/", ".mount", "-.mount"),
    ("///", ".mount", "-.mount"),
    ("/foo/../bar", ".mount", None),
    ("/foo/./bar", ".mount", "foo-bar.mount"),
    # "/waldo" followed by 246 'a' (a 252-byte path; the unit name before
    # hashing would be 256 bytes). Expected: "waldo" + 227 'a' +
    # "_7736d9ed33c2ec55.mount" (255 bytes).
    ('/waldoaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', ".mount",
     'waldoaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_7736d9ed33c2ec55.mount'),
]

# (prefix, path, suffix, expected or None for -EINVAL): all 8 vectors of
# TEST(unit_name_from_path_instance). They use the same path escaping.
UNIT_NAME_FROM_PATH_INSTANCE = [
    ("waldo", "/waldo", ".mount", "waldo@waldo.mount"),
    ("waldo", "/waldo////quuix////", ".mount", "waldo@waldo-quuix.mount"),
    ("waldo", "/", ".mount", "waldo@-.mount"),
    ("waldo", "", ".mount", "waldo@-.mount"),
    ("waldo", "///", ".mount", "waldo@-.mount"),
    ("waldo", "..", ".mount", None),
    ("waldo", "/foo", ".waldi", None),
    ("wa--ldo", "/--", ".mount", "wa--ldo@\\x2d\\x2d.mount"),
]

# ---------------------------------------------------------------------------
# NOT from systemd's test suite. These are extra edge cases whose results
# were observed by calling unit_name_from_path() in libsystemd-shared-252
# (systemd 252) on this machine. They illustrate the rules above.
# (path, suffix, expected or None for -EINVAL)
# ---------------------------------------------------------------------------
LOCAL_252_FROM_PATH_OBSERVATIONS = [
    ("/.dotdir", ".mount", "\\x2edotdir.mount"),
    ("/foo/.bar", ".mount", "foo-.bar.mount"),
    ("foo/bar", ".mount", "foo-bar.mount"),        # relative path accepted
    ("./foo", ".mount", "foo.mount"),
    ("//foo//bar//", ".mount", "foo-bar.mount"),
    ("/foo/bar/.", ".mount", "foo-bar.mount"),
    (".", ".mount", None),
    ("./", ".mount", None),
    ("..", ".mount", None),
    ("/foo/..", ".mount", None),
    ("/..", ".mount", None),          # 252 only; newer upstream: "-.mount"
    ("/../foo", ".mount", None),      # 252 only; newer upstream: "foo.mount"
    ("/foo bar", ".mount", "foo\\x20bar.mount"),
    ("/\u00fc", ".mount", "\\xc3\\xbc.mount"),   # "/ü"
    ("/a-b", ".mount", "a\\x2db.mount"),
    ("/-", ".mount", "\\x2d.mount"),
    ("/foo/-bar", ".mount", "foo-\\x2dbar.mount"),
    ("/a\\b", ".mount", "a\\x5cb.mount"),         # path contains one backslash
    ("/a@b", ".mount", "a\\x40b.mount"),
    ("/a:b", ".mount", "a:b.mount"),
    ("/a%b", ".mount", "a\\x25b.mount"),
    ("/a_b.c", ".mount", "a_b.c.mount"),
    ("/foo", ".device", "foo.device"),
    ("/foo", ".waldi", None),
    ("/foo", "mount", None),
]
