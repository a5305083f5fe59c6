// What the page remembers between renders.

// Alert ids already shown: bounded, oldest forgotten first, so a page left open for
// weeks does not grow without end (Sets iterate in insertion order).
export class RecentIds {
  constructor(limit) {
    this.limit = limit;
    this.ids = new Set();
  }

  // True the first time an id is seen.
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    while (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value);
    return true;
  }

  get size() {
    return this.ids.size;
  }
}
