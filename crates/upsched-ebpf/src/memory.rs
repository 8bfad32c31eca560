//! The memory a program can reach: embedder-supplied regions plus the interpreter's stack.
//!
//! Pointers in a program are plain `u64` addresses in a synthetic address space; nothing maps
//! them to host addresses except the bounds-checked lookups here, so even an unverified program
//! can at worst get a [`MemoryFault`].
//!
//! Address space layout:
//!
//! | addresses                                   | what                                        |
//! |---------------------------------------------|---------------------------------------------|
//! | `0` .. `0x1_0000_0000`                      | never mapped: NULL plus any 32-bit offset faults |
//! | `(k + 1) << 32` .. `+ len`                  | region `k` (the k-th [`Memory::add_region`]) |
//! | [`STACK_BASE`] `+ f * STACK_FRAME_STRIDE` .. `+ 512` | stack frame `f` of the running call chain |
//!
//! Regions are at most 4 GiB - 1 byte long so that one never reaches the next; the gaps between
//! stack frames (64 KiB - 512 bytes) make a frame overrun fault instead of silently landing in
//! the caller's frame. An access must lie entirely inside one region or one live frame.
//!
//! All multi-byte values are little-endian, as for the `bpfel` target clang compiles policies
//! for, whatever the host's byte order.

/// Bytes of stack each call frame gets (the kernel's `MAX_BPF_STACK`).
pub const STACK_FRAME_SIZE: usize = 512;
/// Maximum number of frames in a call chain, the entry function included (the kernel's
/// `MAX_CALL_FRAMES`).
pub const MAX_CALL_DEPTH: usize = 8;
/// Address of the lowest byte of stack frame 0.
pub const STACK_BASE: u64 = 0x7fff_0000_0000;
/// Distance between the bases of consecutive stack frames.
pub const STACK_FRAME_STRIDE: u64 = 0x1_0000;
/// Most regions one [`Memory`] can hold; keeps region addresses below [`STACK_BASE`].
pub const MAX_REGIONS: usize = 4096;

const REGION_SHIFT: u32 = 32;
const MAX_REGION_LEN: usize = (1 << REGION_SHIFT) - 1;

/// Handle of a region inside the [`Memory`] that created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionId(usize);

/// An access outside every region and live stack frame, or a write to a read-only region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} of {size} bytes at {addr:#x} is outside writable memory", if *write { "write" } else { "read" })]
pub struct MemoryFault {
    pub addr: u64,
    pub size: usize,
    pub write: bool,
}

/// Why a region could not be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region {name:?} is {len} bytes; at most {MAX_REGION_LEN} are addressable")]
    TooLarge { name: String, len: usize },
    #[error("at most {MAX_REGIONS} regions fit in the address space")]
    TooMany,
}

#[derive(Clone, Debug)]
struct Region {
    name: String,
    data: Box<[u8]>,
    writable: bool,
}

/// All memory one program instance can reach.
///
/// Regions are owned buffers rather than borrowed slices: a policy instance keeps its globals in
/// them across calls, the embedder copies a context in before a call and reads outputs after it,
/// and nothing is allocated per call.
#[derive(Clone, Debug)]
pub struct Memory {
    regions: Vec<Region>,
    stack: Box<[u8]>,
    live_frames: usize,
    /// Whether a frame is zeroed when it becomes live; see [`Memory::set_zero_frames`].
    zero_frames: bool,
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new()
    }
}

impl Memory {
    pub fn new() -> Memory {
        Memory {
            regions: Vec::new(),
            stack: vec![0; STACK_FRAME_SIZE * MAX_CALL_DEPTH].into_boxed_slice(),
            live_frames: 0,
            zero_frames: true,
        }
    }

    /// Adds a region; its base address is [`Memory::region_base`].
    pub fn add_region(
        &mut self,
        name: impl Into<String>,
        data: Vec<u8>,
        writable: bool,
    ) -> Result<RegionId, RegionError> {
        let name = name.into();
        if data.len() > MAX_REGION_LEN {
            return Err(RegionError::TooLarge {
                name,
                len: data.len(),
            });
        }
        if self.regions.len() >= MAX_REGIONS {
            return Err(RegionError::TooMany);
        }
        self.regions.push(Region {
            name,
            data: data.into_boxed_slice(),
            writable,
        });
        Ok(RegionId(self.regions.len() - 1))
    }

    /// Address of the first byte of a region.
    pub fn region_base(&self, id: RegionId) -> u64 {
        (id.0 as u64 + 1) << REGION_SHIFT
    }

    pub fn region_name(&self, id: RegionId) -> &str {
        &self.regions[id.0].name
    }

    /// The region's bytes. Panics if `id` came from another [`Memory`] with fewer regions.
    pub fn region(&self, id: RegionId) -> &[u8] {
        &self.regions[id.0].data
    }

    /// The region's bytes, for the embedder (read-only applies to the program, not to it).
    pub fn region_mut(&mut self, id: RegionId) -> &mut [u8] {
        &mut self.regions[id.0].data
    }

    /// Value of r10 in stack frame `frame`: one past the frame's highest byte.
    pub const fn frame_pointer(frame: usize) -> u64 {
        STACK_BASE + frame as u64 * STACK_FRAME_STRIDE + STACK_FRAME_SIZE as u64
    }

    /// Copies `buf.len()` bytes at `addr` into `buf`; for helpers that take pointers.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        let bytes = self.bytes(addr, buf.len()).ok_or(MemoryFault {
            addr,
            size: buf.len(),
            write: false,
        })?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    /// Copies `data` to `addr`; for helpers that take pointers.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryFault> {
        let bytes = self.bytes_mut(addr, data.len()).ok_or(MemoryFault {
            addr,
            size: data.len(),
            write: true,
        })?;
        bytes.copy_from_slice(data);
        Ok(())
    }

    /// Reads a `size`-byte (1, 2, 4 or 8) little-endian value, zero-extended.
    #[inline]
    pub fn load(&self, addr: u64, size: usize) -> Result<u64, MemoryFault> {
        let fault = MemoryFault {
            addr,
            size,
            write: false,
        };
        let bytes = self.bytes(addr, size).ok_or(fault)?;
        let mut value = [0u8; 8];
        value.get_mut(..size).ok_or(fault)?.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(value))
    }

    /// Writes the low `size` (1, 2, 4 or 8) bytes of `value`, little-endian.
    #[inline]
    pub fn store(&mut self, addr: u64, size: usize, value: u64) -> Result<(), MemoryFault> {
        let fault = MemoryFault {
            addr,
            size,
            write: true,
        };
        let source = value.to_le_bytes();
        let source = source.get(..size).ok_or(fault)?;
        self.bytes_mut(addr, size)
            .ok_or(fault)?
            .copy_from_slice(source);
        Ok(())
    }

    /// Raw access for other execution engines (the JIT): every region's bytes with whether the
    /// program may write them, in [`RegionId`] order, and the whole stack (frame `f` is the
    /// [`STACK_FRAME_SIZE`] bytes at `f * STACK_FRAME_SIZE`, live or not).
    pub fn engine_view(&mut self) -> (impl ExactSizeIterator<Item = (&mut [u8], bool)>, &mut [u8]) {
        let regions = self
            .regions
            .iter_mut()
            .map(|region| (&mut *region.data, region.writable));
        (regions, &mut self.stack)
    }

    /// Number of stack frames of the running call chain (0 before the first run).
    pub fn live_frames(&self) -> usize {
        self.live_frames
    }

    /// Whether frames are zeroed when they become live (the default), so that nothing a
    /// previous run or call left on the stack can influence the next one. Only programs that
    /// never read a stack byte they did not write first (the verifier proves that) may run
    /// without: leftovers then cannot change a result, and each run saves clearing a
    /// [`STACK_FRAME_SIZE`]-byte frame. Both engines honour it alike, since both start and
    /// extend the call chain through [`Memory::reset_stack`] and [`Memory::push_frame`].
    pub fn set_zero_frames(&mut self, zero: bool) {
        self.zero_frames = zero;
    }

    /// Starts a call chain: only frame 0 is live (zeroed unless [`Memory::set_zero_frames`]
    /// turned that off).
    pub fn reset_stack(&mut self) {
        self.live_frames = 0;
        self.push_frame();
    }

    /// Makes the next frame live (zeroed unless [`Memory::set_zero_frames`] turned that off);
    /// `false` when the chain is already at [`MAX_CALL_DEPTH`].
    pub fn push_frame(&mut self) -> bool {
        let start = self.live_frames * STACK_FRAME_SIZE;
        match self.stack.get_mut(start..start + STACK_FRAME_SIZE) {
            Some(frame) => {
                if self.zero_frames {
                    frame.fill(0);
                }
                self.live_frames += 1;
                true
            }
            None => false,
        }
    }

    /// Ends the deepest frame of the call chain (returning from a bpf-to-bpf call).
    pub fn pop_frame(&mut self) {
        self.live_frames = self.live_frames.saturating_sub(1);
    }

    #[inline]
    fn bytes(&self, addr: u64, size: usize) -> Option<&[u8]> {
        match self.locate(addr, size)? {
            Location::Region { index, offset } => {
                self.regions[index].data.get(offset..offset + size)
            }
            Location::Stack { offset } => self.stack.get(offset..offset + size),
        }
    }

    #[inline]
    fn bytes_mut(&mut self, addr: u64, size: usize) -> Option<&mut [u8]> {
        match self.locate(addr, size)? {
            Location::Region { index, offset } => {
                let region = &mut self.regions[index];
                if !region.writable {
                    return None;
                }
                region.data.get_mut(offset..offset + size)
            }
            Location::Stack { offset } => self.stack.get_mut(offset..offset + size),
        }
    }

    /// Where `size` bytes at `addr` live, if they all lie inside one region or one live frame.
    #[inline]
    fn locate(&self, addr: u64, size: usize) -> Option<Location> {
        let region_number = (addr >> REGION_SHIFT) as usize;
        if let Some(index) = region_number.checked_sub(1) {
            if index < self.regions.len() {
                let offset = (addr & MAX_REGION_LEN as u64) as usize;
                // `offset + size` cannot overflow: offset < 2^32 and size is small.
                return (offset + size <= self.regions[index].data.len())
                    .then_some(Location::Region { index, offset });
            }
        }
        let from_stack_base = addr.checked_sub(STACK_BASE)?;
        let frame = from_stack_base / STACK_FRAME_STRIDE;
        let within_frame = (from_stack_base % STACK_FRAME_STRIDE) as usize;
        let frame_is_live = frame < self.live_frames as u64;
        (frame_is_live && within_frame + size <= STACK_FRAME_SIZE).then_some(Location::Stack {
            offset: frame as usize * STACK_FRAME_SIZE + within_frame,
        })
    }
}

#[derive(Clone, Copy)]
enum Location {
    Region { index: usize, offset: usize },
    Stack { offset: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_get_disjoint_bases_above_the_null_gap() {
        let mut memory = Memory::new();
        let ctx = memory.add_region("ctx", vec![0; 16], true).unwrap();
        let globals = memory.add_region("globals", vec![0; 8], false).unwrap();
        assert_eq!(memory.region_base(ctx), 0x1_0000_0000);
        assert_eq!(memory.region_base(globals), 0x2_0000_0000);
        assert_eq!(memory.region_name(globals), "globals");
        assert!(memory.load(0, 1).is_err());
        assert!(memory.load(0xffff_fff8, 8).is_err());
    }

    #[test]
    fn loads_and_stores_are_little_endian_and_bounds_checked() {
        let mut memory = Memory::new();
        let ctx = memory.add_region("ctx", vec![0; 16], true).unwrap();
        let base = memory.region_base(ctx);
        memory.store(base + 8, 8, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(memory.region(ctx)[8], 0x08);
        assert_eq!(memory.load(base + 8, 2).unwrap(), 0x0708);
        assert_eq!(memory.load(base + 12, 4).unwrap(), 0x0102_0304);
        let fault = memory.load(base + 9, 8).unwrap_err();
        assert_eq!(
            fault,
            MemoryFault {
                addr: base + 9,
                size: 8,
                write: false
            }
        );
        assert!(memory.store(base + 16, 1, 0).is_err());
        assert!(memory.store(base.wrapping_sub(1), 1, 0).is_err());
    }

    #[test]
    fn read_only_regions_reject_program_writes_but_not_the_embedder() {
        let mut memory = Memory::new();
        let rodata = memory.add_region(".rodata", vec![7; 4], false).unwrap();
        let base = memory.region_base(rodata);
        assert_eq!(memory.load(base, 1).unwrap(), 7);
        assert!(memory.store(base, 1, 0).unwrap_err().write);
        assert!(memory.write(base, &[1]).is_err());
        memory.region_mut(rodata)[0] = 9;
        let mut buf = [0; 2];
        memory.read(base, &mut buf).unwrap();
        assert_eq!(buf, [9, 7]);
    }

    #[test]
    fn only_live_stack_frames_are_addressable() {
        let mut memory = Memory::new();
        let fp0 = Memory::frame_pointer(0);
        assert!(memory.load(fp0 - 8, 8).is_err(), "no frame is live yet");
        memory.reset_stack();
        memory.store(fp0 - 8, 8, 42).unwrap();
        assert_eq!(memory.load(fp0 - 8, 8).unwrap(), 42);
        assert!(memory.load(fp0 - 4, 8).is_err(), "crosses the frame top");
        assert!(memory.load(fp0 - 513, 1).is_err(), "below the frame");
        let fp1 = Memory::frame_pointer(1);
        assert!(memory.load(fp1 - 8, 8).is_err());
        assert!(memory.push_frame());
        assert_eq!(memory.load(fp1 - 8, 8).unwrap(), 0);
        memory.pop_frame();
        assert!(memory.load(fp1 - 8, 8).is_err());
    }

    #[test]
    fn call_chain_is_limited_and_frames_start_zeroed() {
        let mut memory = Memory::new();
        memory.reset_stack();
        for _ in 1..MAX_CALL_DEPTH {
            assert!(memory.push_frame());
        }
        assert!(!memory.push_frame());
        let deepest = Memory::frame_pointer(MAX_CALL_DEPTH - 1);
        memory.store(deepest - 1, 1, 0xff).unwrap();
        memory.pop_frame();
        assert!(memory.push_frame());
        assert_eq!(memory.load(deepest - 1, 1).unwrap(), 0);
    }

    #[test]
    fn frames_keep_leftovers_only_when_zeroing_is_off() {
        let mut memory = Memory::new();
        let (fp0, fp1) = (Memory::frame_pointer(0), Memory::frame_pointer(1));
        memory.set_zero_frames(false);
        memory.reset_stack();
        assert!(memory.push_frame());
        memory.store(fp0 - 8, 8, 7).unwrap();
        memory.store(fp1 - 8, 8, 9).unwrap();
        memory.reset_stack();
        assert_eq!(memory.live_frames(), 1);
        assert_eq!(memory.load(fp0 - 8, 8).unwrap(), 7);
        assert!(
            memory.load(fp1 - 8, 8).is_err(),
            "only frame 0 is live again"
        );
        assert!(memory.push_frame());
        assert_eq!(memory.load(fp1 - 8, 8).unwrap(), 9);
        memory.set_zero_frames(true);
        memory.reset_stack();
        assert_eq!(memory.load(fp0 - 8, 8).unwrap(), 0);
        assert!(memory.push_frame());
        assert_eq!(memory.load(fp1 - 8, 8).unwrap(), 0);
    }
}
