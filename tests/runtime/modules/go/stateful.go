// stateful: a Go handler whose runtime state crosses the snapshot boundary. Package
// initialization (part of _initialize, so part of a snapshot) builds a map; each task
// starts goroutines, sleeps, reads the clock, draws random numbers and counts its runs
// in a package-level counter, and returns what it saw as JSON.
//
// math/rand's default source is seeded by the Go runtime at start, inside _initialize:
// a snapshot keeps that seed, so it is the same in every task of one snapshot (the
// snapshot says so: it kept "random"). crypto/rand reads random_get on every call, so
// it is fresh per task.
package main

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math/rand"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// live keeps every buffer handed to the host reachable until the host is done with it.
var live = map[uintptr][]byte{}

func keep(buf []byte) uint32 {
	if len(buf) == 0 {
		buf = make([]byte, 1)
	}
	ptr := uintptr(unsafe.Pointer(&buf[0]))
	live[ptr] = buf
	return uint32(ptr)
}

//go:wasmexport alloc
func alloc(size uint32) uint32 {
	return keep(make([]byte, size))
}

// runs counts the executions this instance has seen: 1 in every task, as each task
// gets an instance of its own.
var runs int

// squares is built before main, by package initialization.
var squares = func() map[string]int {
	m := make(map[string]int, 100)
	for i := 0; i < 100; i++ {
		m[strconv.Itoa(i)] = i * i
	}
	return m
}()

const sleep = 5 * time.Millisecond

type report struct {
	Runs       int    `json:"runs"`
	NowUnixMs  int64  `json:"now_unix_ms"`
	SleepNs    int64  `json:"sleep_ns"`
	SleptNs    int64  `json:"slept_ns"`
	Squares    int    `json:"squares"`
	Sum        int    `json:"sum"`
	Draws      int    `json:"draws"`
	MathRand   int64  `json:"math_rand"`
	CryptoRand string `json:"crypto_rand"`
}

//go:wasmexport execute
func execute(ptr, size uint32) uint64 {
	delete(live, uintptr(ptr))
	runs++
	start := time.Now()
	time.Sleep(sleep)
	slept := time.Since(start)

	var wg sync.WaitGroup
	results := make(chan int, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			time.Sleep(time.Millisecond)
			results <- squares[strconv.Itoa(w)]
		}(w)
	}
	wg.Wait()
	close(results)
	sum := 0
	for v := range results {
		sum += v
	}

	counts := map[int]int{}
	for i := 0; i < 1000; i++ {
		counts[rand.Intn(10)]++
	}
	draws := 0
	for k, n := range counts {
		if k >= 0 && k < 10 {
			draws += n
		}
	}
	secret := make([]byte, 16)
	if _, err := crand.Read(secret); err != nil {
		panic(err)
	}
	out, _ := json.Marshal(report{
		Runs:       runs,
		NowUnixMs:  time.Now().UnixMilli(),
		SleepNs:    int64(sleep),
		SleptNs:    int64(slept),
		Squares:    len(squares),
		Sum:        sum,
		Draws:      draws,
		MathRand:   rand.Int63(),
		CryptoRand: hex.EncodeToString(secret),
	})
	return uint64(keep(out))<<32 | uint64(len(out))
}

func main() {}
