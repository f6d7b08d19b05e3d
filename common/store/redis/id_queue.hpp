// id_queue: values keyed by ids that only grow, most removed in about the order they were added (the Redis store's
// checks in flight): a deque indexed by id - the oldest id, no tree node per value.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>

namespace rg {

template <typename T>
class id_queue {
 public:
  // `id` must be above every id added before; the ids skipped between leave empty slots.
  void add(std::uint64_t id, T value) {
    if (slots_.empty()) first_ = id;
    while (first_ + slots_.size() < id) slots_.emplace_back();
    slots_.emplace_back(std::move(value));
  }
  // Stays valid until the value is erased (later adds do not move it).
  T* find(std::uint64_t id) {
    if (id < first_ || id - first_ >= slots_.size()) return nullptr;
    auto& slot = slots_[id - first_];
    return slot ? &*slot : nullptr;
  }
  bool contains(std::uint64_t id) { return find(id) != nullptr; }
  void erase(std::uint64_t id) {
    if (find(id) != nullptr) slots_[id - first_].reset();
    while (!slots_.empty() && !slots_.front()) {
      slots_.pop_front();
      ++first_;
    }
  }
  bool empty() const { return slots_.empty(); }
  // Each value in id order.
  template <typename F>
  void for_each(F&& each) {
    for (auto& slot : slots_)
      if (slot) each(*slot);
  }

 private:
  std::deque<std::optional<T>> slots_;
  std::uint64_t first_ = 0;  // the id of slots_.front()
};

}  // namespace rg
