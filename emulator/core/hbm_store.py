"""Sparse HBM contents: memory grows with what is touched, not with HBM_SIZE.

A page table (int64 per 64 KiB page: 1 + its slot in a pool of pages, 0 = never written; zero
for absent so a 16 GiB HBM's table is calloc'd memory that costs nothing until touched) points into
the pool.  Reads of
absent pages or beyond the capacity return zeros (as the reference's reads beyond capacity do);
writes need their pages present: the DMA kernel asks for pages *before* touching any state and
the run loop returns ST_NEED_PAGES so the Python façade can grow the pool and resume.
"""

import numpy as np

from .jit import jit

PAGE_SHIFT = 16
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1


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
        page = a >> PAGE_SHIFT
        off = a & PAGE_MASK
        chunk = min(n - i, PAGE_SIZE - off)
        p = pt[page] - 1
        if p < 0:
            out[i:i + chunk] = 0
        else:
            for q in range(chunk):
                out[i + q] = pool[p, off + q]
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
        if pt[page] > 0:
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


@jit
def write_bytes(pt, pool, pages_used, addr, data, n):
    """HBM[addr : addr+n] = data[0:n]; allocates pages from the pool (caller guaranteed room).

    Returns the new number of used pool pages.
    """
    i = 0
    while i < n:
        a = addr + i
        page = a >> PAGE_SHIFT
        off = a & PAGE_MASK
        chunk = min(n - i, PAGE_SIZE - off)
        p = pt[page] - 1
        if p < 0:
            p = pages_used
            pt[page] = p + 1
            pool[p, :] = 0
            pages_used += 1
        for q in range(chunk):
            pool[p, off + q] = data[i + q]
        i += chunk
    return pages_used


class SparseHbm:
    """Python view of the sparse HBM (page table + pool) after or before a run."""

    def __init__(self, capacity: int, page_table: np.ndarray | None = None, pool: np.ndarray | None = None,
                 pages_used: int = 0):
        self.capacity = int(capacity)
        n_pages = (self.capacity + PAGE_SIZE - 1) >> PAGE_SHIFT
        self.page_table = page_table if page_table is not None else np.zeros(n_pages, dtype=np.int64)
        self.pool = pool if pool is not None else np.zeros((4, PAGE_SIZE), dtype=np.uint8)
        self.pages_used = int(pages_used)

    def ensure_free(self, pages: int) -> None:
        """Grow the pool so at least `pages` more pages fit."""
        need = self.pages_used + pages
        if need <= self.pool.shape[0]:
            return
        new = np.zeros((max(need, 2 * self.pool.shape[0]), PAGE_SIZE), dtype=np.uint8)
        new[: self.pages_used] = self.pool[: self.pages_used]
        self.pool = new

    def write(self, addr: int, data: bytes | np.ndarray) -> None:
        buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8)
        n = int(buf.shape[0])
        if addr < 0 or addr + n > self.capacity:
            raise ValueError(f"HBM write [{addr}, {addr + n}) exceeds the capacity {self.capacity}")
        first, last = addr >> PAGE_SHIFT, (addr + max(n, 1) - 1) >> PAGE_SHIFT
        missing = int(np.count_nonzero(self.page_table[first:last + 1] == 0)) if n else 0
        self.ensure_free(missing)
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
        return [(int(page), self.pool[self.page_table[page] - 1]) for page in np.nonzero(self.page_table)[0]]

    def last_nonzero_end(self) -> int:
        """End address of the last non-zero 64-byte block (0 if HBM is all zero)."""
        for page, data in self.resident_pages()[::-1]:
            nz = np.nonzero(data)[0]
            if nz.size:
                end = (int(page) << PAGE_SHIFT) + int(nz[-1]) + 1
                return min(-(-end // 64) * 64, self.capacity)
        return 0
