// Name resolution and the switch from root to the configured account, Postfix's set_ugid() done with
// setres[ug]id so real, effective and saved IDs all change and nothing is kept to switch back with.
// Runs once at start-up, before the event loop: the blocking NSS look-ups are fine here. login_name() is the
// exception: the milter front asks it for each local message (local files, as on the servers it is for).
#include "privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace rg {

namespace {

std::runtime_error failure(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

// getpwnam_r / getgrnam_r with a buffer grown on ERANGE (a group with thousands of members needs more).
template <typename Entry, typename Lookup>
Entry* look_up(Lookup lookup, const std::string& name, Entry& entry, std::vector<char>& buf,
               const std::string& what) {
  Entry* found = nullptr;
  for (std::size_t size = 16384;; size *= 4) {
    buf.resize(size);
    const int e = lookup(name.c_str(), &entry, buf.data(), buf.size(), &found);
    if (e == 0) return found;
    if (e != ERANGE || size >= (std::size_t{1} << 24))
      throw failure(what + ": cannot look up \"" + name + "\"", e);
  }
}

}  // namespace

std::optional<user_ids> find_user(const std::string& name, const std::string& what) {
  std::vector<char> buf;
  passwd pw{};
  if (!look_up(getpwnam_r, name, pw, buf, what)) return std::nullopt;
  return user_ids{pw.pw_uid, pw.pw_gid};
}

std::optional<gid_t> find_group(const std::string& name, const std::string& what) {
  std::vector<char> buf;
  struct group gr {};
  if (!look_up(getgrnam_r, name, gr, buf, what)) return std::nullopt;
  return gr.gr_gid;
}

std::string login_name(uid_t uid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return {};
  return pw.pw_name;
}

identity resolve_identity(const std::string& user, const std::string& group) {
  const auto ids = find_user(user);
  if (!ids)
    throw std::runtime_error("user: unknown user \"" + user +
                             "\" (create it, e.g. adduser --system --group --no-create-home " + user + ")");
  identity id{user, ids->uid, ids->gid};
  if (id.uid == 0) throw std::runtime_error("user: \"" + user + "\" has uid 0: name an unprivileged account");
  if (!group.empty()) {
    const auto gid = find_group(group);
    if (!gid) throw std::runtime_error("group: unknown group \"" + group + "\"");
    id.gid = *gid;
  }
  if (id.gid == 0)
    throw std::runtime_error(
        (group.empty() ? "user: the login group of \"" + user + "\"" : "group: \"" + group + "\"") +
        " has gid 0: name an unprivileged group");
  return id;
}

std::optional<identity> identity_to_become(const daemon_config& c) {
  const uid_t euid = geteuid();
  if (c.user.empty()) {
    if (euid == 0 && !c.allow_root)
      throw std::runtime_error(
          "refusing to run as root: set user = (an unprivileged account, e.g. a system user "
          "rateguard), or allow_root = yes");
    return std::nullopt;
  }
  identity id = resolve_identity(c.user, c.group);
  if (euid == 0) return id;
  // Started unprivileged, e.g. by a service manager that switched already: fine if it is that account.
  if (euid == id.uid && getegid() == id.gid) return std::nullopt;
  throw std::runtime_error("user: started as uid " + std::to_string(euid) + ", not as root nor as \"" +
                           c.user + "\": cannot switch to it");
}

void drop_privileges(const identity& id) {
  if (initgroups(id.user.c_str(), id.gid) != 0) throw failure("initgroups " + id.user, errno);
  if (setresgid(id.gid, id.gid, id.gid) != 0) throw failure("setresgid " + std::to_string(id.gid), errno);
  if (setresuid(id.uid, id.uid, id.uid) != 0) throw failure("setresuid " + std::to_string(id.uid), errno);
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 || ruid != id.uid ||
      euid != id.uid || suid != id.uid || rgid != id.gid || egid != id.gid || sgid != id.gid)
    throw std::runtime_error("privileges: real, effective and saved IDs did not all change");
  // The proof: with every ID and capability gone, asking for root back must fail.
  if (setuid(0) == 0 || seteuid(0) == 0)
    throw std::runtime_error("privileges: root could be regained after dropping it");
}

}  // namespace rg
