"""Sparse HBM contents: memory grows with the bytes written, not with HBM_SIZE.

HBM is cut into 1 KiB pages.  A page table maps each written page to a row of a page pool; reads
of absent pages or beyond the capacity return zeros (as the reference's reads beyond capacity do).
The table is an open-addressing hash table (`pt[slot] = (page, pool row)`, -1 = empty, linear
probing, kept at most half full), so its size follows the pages written too: a 16 GiB or 256 TiB
HBM costs nothing until it is written.  Pool and table grow geometrically (amortised O(1) per
page).  Writes need their pages to fit the pool: the DMA kernel counts the pages it would add
*before* touching any state and the run loop returns ST_NEED_PAGES so the Python façade can grow
the pool (and the table with it) and resume.
"""

import numpy as np

from ..errors import ResourceError
from .jit import jit, python_entry

PAGE_SHIFT = 10
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
EMPTY = -1
_FIBONACCI = np.int64(-7046029254386353131)   # 0x9E3779B97F4A7C15 as int64: multiplicative hashing
_INITIAL_POOL_PAGES = 16


@jit
def _slot(pt, page):
    """The slot holding `page`, or the empty slot where it would go."""
    mask = pt.shape[0] - 1
    h = ((page * _FIBONACCI) >> 29) & mask
    while True:
        key = pt[h, 0]
        if key == page or key == EMPTY:
            return h
        h = (h + 1) & mask


@jit
def page_row(pt, page):
    """Pool row of `page`, or -1 when it was never written."""
    return pt[_slot(pt, page), 1]


@python_entry
@jit
def read_bytes(pt, pool, capacity, addr, out, n):
    """out[0:n] = HBM[addr : addr+n]; addresses are u64 bit patterns held in int64."""
    i = 0
    while i < n:
        a = addr + i
        if a < 0 or a >= capacity:
            out[i] = 0
            i += 1
            continue
        off = a & PAGE_MASK
        chunk = min(n - i, PAGE_SIZE - off)
        p = page_row(pt, a >> PAGE_SHIFT)
        if p < 0:
            out[i:i + chunk] = 0
        else:
            for k in range(chunk):  # element loop, not a slice copy: see core/jit.py
                out[i + k] = pool[p, off + k]
        i += chunk


@jit
def missing_pages(pt, capacity, addr, n, seen, nseen):
    """Count pages of [addr, addr+n) inside the capacity that are not yet allocated.

    `seen[:nseen]` lists pages already counted by this instruction (deduplication); returns the
    new nseen.
    """
    if n <= 0:
        return nseen
    first = max(addr, 0) >> PAGE_SHIFT
    last = min(addr + n - 1, capacity - 1) >> PAGE_SHIFT
    for page in range(first, last + 1):
        if page_row(pt, page) >= 0:
            continue
        dup = False
        for j in range(nseen):
            if seen[j] == page:
                dup = True
                break
        if not dup:
            seen[nseen] = page
            nseen += 1
    return nseen


@python_entry
@jit
def absent_pages(pt, first, last):
    """Pages first..last (inclusive) that are not allocated."""
    count = 0
    for page in range(first, last + 1):
        if page_row(pt, page) < 0:
            count += 1
    return count


@python_entry
@jit
def write_bytes(pt, pool, pages_used, addr, data, n):
    """HBM[addr : addr+n] = data[0:n]; allocates pages from the pool (caller guaranteed room, and
    the table is at most half full).  Returns the new number of used pool pages."""
    i = 0
    while i < n:
        a = addr + i
        page = a >> PAGE_SHIFT
        off = a & PAGE_MASK
        chunk = min(n - i, PAGE_SIZE - off)
        s = _slot(pt, page)
        p = pt[s, 1]
        if p < 0:
            p = pages_used
            pt[s, 0] = page
            pt[s, 1] = p
            pool[p, :] = 0
            pages_used += 1
        for k in range(chunk):  # element loop, not a slice copy: see core/jit.py
            pool[p, off + k] = data[i + k]
        i += chunk
    return pages_used


@python_entry
@jit
def rehash(old, new):
    for i in range(old.shape[0]):
        page = old[i, 0]
        if page != EMPTY:
            s = _slot(new, page)
            new[s, 0] = page
            new[s, 1] = old[i, 1]


def empty_table(slots: int) -> np.ndarray:
    """A page table with `slots` empty slots (a power of two)."""
    return np.full((slots, 2), EMPTY, dtype=np.int64)


class SparseHbm:
    """Python view of the sparse HBM (page table + pool) after or before a run.

    `max_bytes` bounds the pool (pages written x PAGE_SIZE); growing past it raises ResourceError.
    """

    def __init__(self, capacity: int, *, max_bytes: int | None = None):
        self.capacity = int(capacity)
        self.max_bytes = max_bytes
        self.pool = np.zeros((_INITIAL_POOL_PAGES, PAGE_SIZE), dtype=np.uint8)
        self.page_table = empty_table(4 * _INITIAL_POOL_PAGES)
        self.pages_used = 0

    def ensure_free(self, pages: int) -> None:
        """Grow the pool so at least `pages` more pages fit (and the table stays at most half full)."""
        need = self.pages_used + pages
        if need <= self.pool.shape[0]:
            return
        if self.max_bytes is not None and need * PAGE_SIZE > self.max_bytes:
            raise ResourceError(f"the HBM pages written would take {need * PAGE_SIZE:,} bytes; the run's memory "
                                f"budget leaves {self.max_bytes:,} bytes for HBM")
        rows = max(need, 2 * self.pool.shape[0])
        if self.max_bytes is not None:
            rows = max(need, min(rows, self.max_bytes // PAGE_SIZE))
        new = np.zeros((rows, PAGE_SIZE), dtype=np.uint8)   # untouched rows stay unmapped (calloc)
        new[: self.pages_used] = self.pool[: self.pages_used]
        self.pool = new
        if self.page_table.shape[0] < 2 * rows:
            table = empty_table(1 << (2 * rows - 1).bit_length())
            rehash(self.page_table, table)
            self.page_table = table

    def write(self, addr: int, data: bytes | np.ndarray) -> None:
        buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8)
        n = int(buf.shape[0])
        if addr < 0 or addr + n > self.capacity:
            raise ValueError(f"HBM write [{addr}, {addr + n}) exceeds the capacity {self.capacity}")
        if not n:
            return
        self.ensure_free(int(absent_pages(self.page_table, addr >> PAGE_SHIFT, (addr + n - 1) >> PAGE_SHIFT)))
        self.pages_used = int(write_bytes(self.page_table, self.pool, self.pages_used, addr, buf, n))

    def read(self, addr: int, n: int) -> bytes:
        out = np.zeros(n, dtype=np.uint8)
        read_bytes(self.page_table, self.pool, self.capacity, addr, out, n)
        return out.tobytes()

    @property
    def resident_bytes(self) -> int:
        return self.pages_used * PAGE_SIZE

    def resident_pages(self) -> list[tuple[int, np.ndarray]]:
        """(page number, its PAGE_SIZE bytes in the pool) for every page ever written, in address order."""
        used = self.page_table[self.page_table[:, 0] != EMPTY]
        return [(int(page), self.pool[row]) for page, row in used[np.argsort(used[:, 0])]]

    def last_nonzero_end(self) -> int:
        """End address of the last non-zero 64-byte block (0 if HBM is all zero)."""
        for page, data in self.resident_pages()[::-1]:
            nz = np.nonzero(data)[0]
            if nz.size:
                end = (int(page) << PAGE_SHIFT) + int(nz[-1]) + 1
                return min(-(-end // 64) * 64, self.capacity)
        return 0
