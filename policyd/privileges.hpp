// Least privilege for rateguardd: which account to become (the `user`, `group` and `allow_root`
// settings, resolved by name at start-up) and the one-way switch to it once every listener is bound.
// Not here: binding and socket ownership (server), reading secrets before the switch (main).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "config.hpp"

namespace rg {

struct identity {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Look-ups by name for every part of the daemon (privileges, unix_socket_owner): getpwnam_r / getgrnam_r
// with a buffer grown on ERANGE (a group with thousands of members needs more than 16 kB). nullopt when
// there is no such user or group; throws std::runtime_error "WHAT: cannot look up \"NAME\": ..." when the
// look-up itself fails. Blocking (NSS): start-up only.
struct user_ids {
  uid_t uid = 0;
  gid_t gid = 0;  // the login group
};
std::optional<user_ids> find_user(const std::string& name, const std::string& what = "user");
std::optional<gid_t> find_group(const std::string& name, const std::string& what = "group");
// The login name of `uid`; empty when it has none or the look-up fails (the milter front then counts the number).
std::string login_name(uid_t uid);

// Resolves `user` and `group` (empty group: the user's login group). Refuses unknown names and root
// (uid 0 or gid 0): running as root is what allow_root is for. Throws std::runtime_error starting with
// the setting's name.
identity resolve_identity(const std::string& user, const std::string& group);

// The start-up decision, taken before anything is bound: whom to become after binding, or nothing
// (no `user` and allow_root, or already running as `user`). Throws std::runtime_error when the daemon
// must not run: root without `user` and without allow_root, or `user` set but started as someone else.
std::optional<identity> identity_to_become(const daemon_config& c);

// For good: supplementary groups of the user (initgroups, so membership of e.g. the redis group reaches
// a Redis socket), then gid, then uid, real, effective and saved alike. Then proves that root cannot be
// regained. Throws std::runtime_error naming the failed step.
void drop_privileges(const identity& id);

}  // namespace rg
