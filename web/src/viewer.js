// The room page's 3D view: atoms coloured and sized by element, the cell as
// 12 line segments, OrbitControls.
//
//   const viewer = new Viewer(canvas);
//   viewer.show(frame);           // {numbers, positions (flat 3N), cell (9 or null)} -> {atoms, warning}
//   viewer.setSelection([0, 4]);  // highlighted with a halo
//   viewer.onPick(({index, shiftKey}) => ...);  // index -1: empty space
//
// Atoms are one InstancedMesh of icospheres whose detail drops as the atom
// count grows (sphereDetail). Past impostorAbove atoms they become sphere
// impostors instead: one quad per atom in a single merged geometry, whose
// fragment shader draws a lit sphere with its true depth. Why not instancing
// there: software WebGL (SwiftShader, which is what a browser without a GPU
// runs, and the tests) pays about 20 µs per instance, so 100,000 instances
// take 2 s a frame whatever the geometry, while one merged draw of 100,000
// quads takes tens of milliseconds; on a GPU both are fast.
//
// The view renders on demand (a change, a camera move), never in a loop, so
// an idle page costs nothing. A frame with the same atoms as the one shown
// only rewrites positions in place.
import * as THREE from "three";
import {OrbitControls} from "three/examples/jsm/controls/OrbitControls.js";
import {mergeVertices} from "three/examples/jsm/utils/BufferGeometryUtils.js";
import {color, radius} from "./elements.js";

// impostorAbove is the atom count past which atoms are drawn as impostors.
export const impostorAbove = 5000;

// sphereDetail is the icosphere subdivision for n atoms (three.js
// IcosahedronGeometry detail d has 20(d+1)² triangles): 500 triangles per
// atom up to 250 atoms, 180 up to 1,000, 80 up to 5,000; -1 past that:
// impostors (2 triangles per atom, a pixel-exact sphere).
export function sphereDetail(n) {
  if (n <= 250) return 4;
  if (n <= 1000) return 2;
  if (n <= impostorAbove) return 1;
  return -1;
}

const spheres = new Map();

// sphere returns the unit icosphere of a detail level: indexed (shared
// vertices, so the vertex shader runs once per vertex) with normals pointing
// outwards.
function sphere(detail) {
  let g = spheres.get(detail);
  if (g) return g;
  const ico = new THREE.IcosahedronGeometry(1, detail);
  ico.deleteAttribute("normal");
  ico.deleteAttribute("uv");
  g = mergeVertices(ico);
  ico.dispose();
  g.setAttribute("normal", g.getAttribute("position").clone());
  g.computeBoundingSphere();
  spheres.set(detail, g);
  return g;
}

const background = 0x1d232e;
const selectionColor = 0xffd21f;
const haloScale = 1.45;
// The corners of an impostor quad, in units of its radius.
const quadCorners = new Float32Array([-1, -1, 1, -1, 1, 1, -1, 1]);

// SphereAtoms draws atoms as an InstancedMesh of icospheres.
class SphereAtoms {
  constructor(detail, radii, colors, material) {
    const n = radii.length;
    this.radii = radii;
    this.mesh = new THREE.InstancedMesh(sphere(detail), material, Math.max(n, 1));
    this.mesh.count = n;
    this.mesh.instanceMatrix.setUsage(THREE.DynamicDrawUsage);
    if (colors) this.mesh.instanceColor = new THREE.InstancedBufferAttribute(colors, 3);
    this.mesh.frustumCulled = false; // one bounding sphere for all atoms: culling saves nothing
  }

  get object() {
    return this.mesh;
  }

  // setPositions writes scale and translation of every instance straight
  // into the instance matrices (no Object3D per atom). only: the atom
  // indices to draw (a halo), or null for all.
  setPositions(positions, only = null, grow = 1) {
    const m = this.mesh.instanceMatrix.array;
    const count = only ? only.length : this.radii.length;
    for (let k = 0; k < count; k++) {
      const i = only ? only[k] : k;
      const s = this.radii[i] * grow;
      const o = 16 * k;
      m[o] = s; m[o + 1] = 0; m[o + 2] = 0; m[o + 3] = 0;
      m[o + 4] = 0; m[o + 5] = s; m[o + 6] = 0; m[o + 7] = 0;
      m[o + 8] = 0; m[o + 9] = 0; m[o + 10] = s; m[o + 11] = 0;
      m[o + 12] = positions[3 * i]; m[o + 13] = positions[3 * i + 1]; m[o + 14] = positions[3 * i + 2]; m[o + 15] = 1;
    }
    this.mesh.count = count;
    this.mesh.instanceMatrix.needsUpdate = true;
    this.mesh.boundingSphere = null; // recomputed by the next raycast
  }

  // raycast returns the instance hit first, -1 for none: three.js raycasting
  // on the InstancedMesh.
  raycast(raycaster) {
    const hits = raycaster.intersectObject(this.mesh, false);
    return hits.length ? hits[0].instanceId : -1;
  }

  dispose() {
    this.mesh.dispose();
  }
}

// ImpostorAtoms draws atoms as camera-facing quads, four vertices each in
// one geometry (position: the atom's centre, repeated; corner: ±1), shaded
// as spheres by impostorMaterial.
class ImpostorAtoms {
  constructor(radii, colors, material) {
    this.radii = radii;
    this.capacity = 0;
    this.material = material;
    this.geometry = new THREE.BufferGeometry();
    this.mesh = new THREE.Mesh(this.geometry, material);
    this.mesh.frustumCulled = false;
    this.colors = colors;
    this.centers = null;
  }

  get object() {
    return this.mesh;
  }

  // allocate sizes the buffers for n quads. Growing replaces the geometry:
  // disposing the old one frees its GPU buffers (three.js frees those of
  // the attributes a geometry has when it is disposed, so attributes merely
  // replaced on a live geometry would stay allocated).
  allocate(n) {
    if (this.capacity && n <= this.capacity) return;
    if (this.capacity) {
      this.geometry.dispose();
      this.geometry = new THREE.BufferGeometry();
      this.mesh.geometry = this.geometry;
    }
    const cap = Math.max(n, 16);
    const corner = new Float32Array(8 * cap);
    const index = new Uint32Array(6 * cap);
    for (let i = 0; i < cap; i++) {
      corner.set(quadCorners, 8 * i);
      const v = 4 * i;
      index.set([v, v + 1, v + 2, v, v + 2, v + 3], 6 * i);
    }
    this.centers = new Float32Array(12 * cap);
    this.size = new Float32Array(4 * cap);
    this.tint = new Float32Array(12 * cap);
    const g = this.geometry;
    g.setAttribute("position", new THREE.BufferAttribute(this.centers, 3).setUsage(THREE.DynamicDrawUsage));
    g.setAttribute("corner", new THREE.BufferAttribute(corner, 2));
    g.setAttribute("radius", new THREE.BufferAttribute(this.size, 1).setUsage(THREE.DynamicDrawUsage));
    g.setAttribute("atomColor", new THREE.BufferAttribute(this.tint, 3).setUsage(THREE.DynamicDrawUsage));
    g.setIndex(new THREE.BufferAttribute(index, 1));
    this.capacity = cap;
  }

  setPositions(positions, only = null, grow = 1) {
    const count = only ? only.length : this.radii.length;
    const cap = this.capacity;
    this.allocate(count);
    // Radii and colours are the object's own: for all atoms they need
    // writing only into new buffers or with another scale (a subset, the
    // halo, is small and written every time).
    const shape = only || this.only || this.capacity !== cap || grow !== this.grow;
    const c = this.centers;
    const r = this.size;
    const t = this.tint;
    const colors = shape ? this.colors : null;
    for (let k = 0; k < count; k++) {
      const i = only ? only[k] : k;
      const x = positions[3 * i];
      const y = positions[3 * i + 1];
      const z = positions[3 * i + 2];
      const s = this.radii[i] * grow;
      for (let v = 0; v < 4; v++) {
        const o = 3 * (4 * k + v);
        c[o] = x; c[o + 1] = y; c[o + 2] = z;
        if (shape) r[4 * k + v] = s;
        if (colors) {
          t[o] = colors[3 * i]; t[o + 1] = colors[3 * i + 1]; t[o + 2] = colors[3 * i + 2];
        }
      }
    }
    const g = this.geometry;
    g.getAttribute("position").needsUpdate = true;
    if (shape) g.getAttribute("radius").needsUpdate = true;
    if (colors) g.getAttribute("atomColor").needsUpdate = true;
    this.grow = grow;
    g.setDrawRange(0, 6 * count);
    this.count = count;
    this.positions = positions;
    this.only = only;
  }

  // raycast: an exact ray-sphere test per atom.
  raycast(raycaster) {
    const {origin: o, direction: d} = raycaster.ray; // the mesh has no transform
    const p = this.positions;
    let best = -1;
    let bestT = Infinity;
    for (let k = 0; k < this.count; k++) {
      const i = this.only ? this.only[k] : k;
      const r = this.size[4 * k];
      const cx = p[3 * i] - o.x;
      const cy = p[3 * i + 1] - o.y;
      const cz = p[3 * i + 2] - o.z;
      const b = cx * d.x + cy * d.y + cz * d.z;
      const disc = b * b - (cx * cx + cy * cy + cz * cz) + r * r;
      if (disc < 0) continue;
      const t = b - Math.sqrt(disc);
      if (t > 0 && t < bestT) {
        bestT = t;
        best = i;
      }
    }
    return best;
  }

  dispose() {
    this.geometry.dispose();
  }
}

// impostorMaterial shades ImpostorAtoms' quads as spheres: the quad faces
// the camera, a little larger than the sphere so perspective does not cut
// the silhouette; the fragment shader intersects the view ray with the
// sphere, discards misses, shades the hit (ambient, a headlight, a
// highlight: close to the MeshPhongMaterial of the sphere meshes) and writes
// its depth, so overlapping atoms intersect as real spheres do. tint: one
// colour for all (the selection halo) instead of per-atom colours.
function impostorMaterial({tint = null, opacity = 1} = {}) {
  return new THREE.ShaderMaterial({
    transparent: opacity < 1,
    depthWrite: opacity === 1,
    depthTest: opacity === 1,
    uniforms: {opacity: {value: opacity}, tint: {value: new THREE.Color(tint ?? 0xffffff)}},
    defines: tint === null ? {} : {FLAT_TINT: 1},
    vertexShader: `
      attribute vec2 corner;
      attribute float radius;
      attribute vec3 atomColor;
      varying vec3 vColor;
      varying vec3 vCenter;
      varying vec2 vUv;
      varying float vRadius;
      const float grow = 1.25;
      void main() {
        vec4 c = modelViewMatrix * vec4(position, 1.0);
        vCenter = c.xyz;
        vRadius = radius;
        vUv = corner * grow;
        vColor = atomColor;
        gl_Position = projectionMatrix * vec4(c.xy + vUv * radius, c.z, 1.0);
      }`,
    fragmentShader: `
      uniform mat4 projectionMatrix;
      uniform float opacity;
      uniform vec3 tint;
      varying vec3 vColor;
      varying vec3 vCenter;
      varying vec2 vUv;
      varying float vRadius;
      void main() {
        vec3 dir = normalize(vec3(vCenter.xy + vUv * vRadius, vCenter.z));
        float b = dot(dir, vCenter);
        float disc = b * b - dot(vCenter, vCenter) + vRadius * vRadius;
        if (disc < 0.0) discard;
        vec3 p = dir * (b - sqrt(disc));
        vec3 n = normalize(p - vCenter);
        vec4 clip = projectionMatrix * vec4(p, 1.0);
        gl_FragDepth = 0.5 + 0.5 * clip.z / clip.w;
        #ifdef FLAT_TINT
          gl_FragColor = vec4(tint, opacity);
        #else
          vec3 l = normalize(vec3(0.4, 0.6, 1.0));
          vec3 h = normalize(l + vec3(0.0, 0.0, 1.0));
          float diff = max(dot(n, l), 0.0);
          float spec = pow(max(dot(n, h), 0.0), 50.0);
          gl_FragColor = vec4(vColor * (0.32 + 0.95 * diff) + 0.2 * spec, opacity);
        #endif
        #include <colorspace_fragment>
      }`,
  });
}

export class Viewer {
  // options: radii ("covalent" or "vdw"), scale (radius factor),
  // antialias.
  constructor(canvas, {radii = "covalent", scale = 0.6, antialias = true} = {}) {
    this.canvas = canvas;
    this.radii = radii;
    this.scale = scale;
    // preserveDrawingBuffer: screenshots and pixel checks read the canvas.
    this.renderer = new THREE.WebGLRenderer({canvas, antialias, preserveDrawingBuffer: true});
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.setClearColor(background);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(45, 1, 0.05, 5000);
    this.camera.position.set(0, 0, 30);
    this.scene.add(new THREE.AmbientLight(0xffffff, 1.0));
    const head = new THREE.DirectionalLight(0xffffff, 3.0); // a headlight, moving with the camera
    head.position.set(0.4, 0.6, 1);
    this.camera.add(head);
    this.scene.add(this.camera);

    this.materials = {
      sphere: new THREE.MeshPhongMaterial({color: 0xffffff, shininess: 50, specular: 0x333333}),
      // Halos show through other atoms: a selected atom is never lost
      // inside the structure.
      sphereHalo: new THREE.MeshBasicMaterial({color: selectionColor, transparent: true, opacity: 0.55, depthWrite: false, depthTest: false}),
      impostor: impostorMaterial(),
      impostorHalo: impostorMaterial({tint: selectionColor, opacity: 0.55}),
      cell: new THREE.LineBasicMaterial({color: 0x9aa4b5}),
    };
    this.atoms = null; // SphereAtoms or ImpostorAtoms
    this.halo = null; // the same for the selected atoms, slightly larger
    this.cell = null; // LineSegments
    this.numbers = null; // atomic numbers of the atoms shown
    this.positions = null;
    this.selection = [];
    this.pickers = [];
    this.renders = 0;
    this.fitted = false;

    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = false; // damping needs a render loop
    this.controls.addEventListener("change", () => this.requestRender());

    this.raycaster = new THREE.Raycaster();
    let down = null;
    canvas.addEventListener("pointerdown", (e) => {
      down = {x: e.clientX, y: e.clientY};
    });
    canvas.addEventListener("pointerup", (e) => {
      const click = down && Math.hypot(e.clientX - down.x, e.clientY - down.y) <= 4; // else a drag
      down = null;
      if (!click) return;
      const index = this.pick(e.clientX, e.clientY);
      for (const fn of this.pickers) fn({index, shiftKey: e.shiftKey, ctrlKey: e.ctrlKey || e.metaKey});
    });

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(canvas);
    this.resize();
  }

  resize() {
    const w = Math.max(1, this.canvas.clientWidth);
    const h = Math.max(1, this.canvas.clientHeight);
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }

  // requestRender renders once at the next animation frame.
  requestRender() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render();
    });
  }

  render() {
    this.renderer.render(this.scene, this.camera);
    this.renders++;
  }

  // show displays a frame: {numbers, positions, cell}. With the same atomic
  // numbers as the frame shown only the positions are rewritten. Returns
  // {atoms, warning}: a frame without atomic numbers is drawn as atoms of
  // unknown element (X, atomic number 0), and warning says so.
  show(frame) {
    const {positions} = frame;
    let numbers = frame.numbers;
    let warning = "";
    if (!numbers) {
      numbers = new Int32Array(positions ? Math.floor(positions.length / 3) : 0);
      if (numbers.length) warning = `no atomic numbers: ${numbers.length} atoms drawn as unknown element X`;
    }
    const n = numbers.length;
    if (!positions || positions.length < 3 * n) throw new Error(`frame has ${n} atoms but ${positions ? positions.length / 3 : 0} positions`);
    if (!this.atoms || !sameNumbers(this.numbers, numbers)) this.rebuild(numbers);
    this.positions = positions;
    this.atoms.setPositions(positions);
    this.showCell(frame.cell);
    this.updateHalo();
    if (!this.fitted && n > 0) {
      this.fit();
      this.fitted = true;
    }
    this.requestRender();
    return {atoms: n, warning};
  }

  // clear removes everything (a room without frames).
  clear() {
    this.removeAtoms();
    if (this.cell) {
      this.scene.remove(this.cell);
      this.cell.geometry.dispose();
      this.cell = null;
    }
    this.numbers = this.positions = null;
    this.fitted = false;
    this.requestRender();
  }

  removeAtoms() {
    for (const a of [this.atoms, this.halo]) {
      if (!a) continue;
      this.scene.remove(a.object);
      a.dispose();
    }
    this.atoms = this.halo = null;
  }

  rebuild(numbers) {
    this.removeAtoms();
    const n = numbers.length;
    const detail = sphereDetail(n);
    this.detail = detail;
    const colors = new Float32Array(3 * n);
    const c = new THREE.Color();
    const radii = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const z = Number(numbers[i]);
      c.setHex(color(z), THREE.SRGBColorSpace);
      colors[3 * i] = c.r;
      colors[3 * i + 1] = c.g;
      colors[3 * i + 2] = c.b;
      radii[i] = radius(z, this.radii) * this.scale;
    }
    this.atomRadii = radii;
    this.atoms = detail < 0 ? new ImpostorAtoms(radii, colors, this.materials.impostor) :
      new SphereAtoms(detail, radii, colors, this.materials.sphere);
    this.scene.add(this.atoms.object);
    this.numbers = Array.from(numbers, Number);
  }

  showCell(cell) {
    const valid = cell && cell.length === 9 && Array.from(cell).some((x) => x !== 0);
    if (!valid) {
      if (this.cell) {
        this.scene.remove(this.cell);
        this.cell.geometry.dispose();
        this.cell = null;
      }
      return;
    }
    const v = (r) => [cell[3 * r], cell[3 * r + 1], cell[3 * r + 2]]; // lattice vectors are rows
    const [a, b, c] = [v(0), v(1), v(2)];
    const corner = (i, j, k) => [0, 1, 2].map((d) => i * a[d] + j * b[d] + k * c[d]);
    const pts = [];
    const edge = (p, q) => pts.push(...corner(...p), ...corner(...q));
    for (const [j, k] of [[0, 0], [1, 0], [0, 1], [1, 1]]) edge([0, j, k], [1, j, k]); // 4 edges along a
    for (const [i, k] of [[0, 0], [1, 0], [0, 1], [1, 1]]) edge([i, 0, k], [i, 1, k]); // 4 along b
    for (const [i, j] of [[0, 0], [1, 0], [0, 1], [1, 1]]) edge([i, j, 0], [i, j, 1]); // 4 along c
    const g = new THREE.BufferGeometry();
    g.setAttribute("position", new THREE.Float32BufferAttribute(pts, 3));
    if (this.cell) {
      this.cell.geometry.dispose();
      this.cell.geometry = g;
    } else {
      this.cell = new THREE.LineSegments(g, this.materials.cell);
      this.scene.add(this.cell);
    }
  }

  // setSelection highlights atoms (indices outside the frame are ignored).
  setSelection(indices) {
    this.selection = Array.from(indices || [], Number);
    this.updateHalo();
    this.requestRender();
  }

  updateHalo() {
    if (!this.atoms) return;
    const n = this.numbers.length;
    const sel = this.selection.filter((i) => Number.isInteger(i) && i >= 0 && i < n);
    if (!this.halo) {
      this.halo = this.detail < 0 ? new ImpostorAtoms(this.atomRadii, null, this.materials.impostorHalo) :
        new SphereAtoms(Math.min(this.detail, 2), this.atomRadii, null, this.materials.sphereHalo);
      this.halo.object.renderOrder = 1;
      this.scene.add(this.halo.object);
    }
    this.halo.setPositions(this.positions, sel, haloScale);
  }

  // onPick calls fn({index, shiftKey, ctrlKey}) when the canvas is clicked
  // (not dragged); index is the atom hit, -1 for none. Returns a function
  // that removes fn.
  onPick(fn) {
    this.pickers.push(fn);
    return () => {
      this.pickers = this.pickers.filter((f) => f !== fn);
    };
  }

  // pick returns the index of the atom under a point (client coordinates),
  // -1 if none.
  pick(clientX, clientY) {
    if (!this.atoms) return -1;
    const r = this.canvas.getBoundingClientRect();
    const p = new THREE.Vector2(((clientX - r.left) / r.width) * 2 - 1, -((clientY - r.top) / r.height) * 2 + 1);
    this.raycaster.setFromCamera(p, this.camera);
    return this.atoms.raycast(this.raycaster);
  }

  // project returns the client coordinates of atom i (for tests and labels).
  project(i) {
    if (!this.positions || i < 0 || 3 * i + 2 >= this.positions.length) return null;
    const p = this.positions;
    const v = new THREE.Vector3(p[3 * i], p[3 * i + 1], p[3 * i + 2]).project(this.camera);
    const r = this.canvas.getBoundingClientRect();
    return {x: r.left + (v.x + 1) / 2 * r.width, y: r.top + (1 - v.y) / 2 * r.height};
  }

  // fit points the camera at the atoms (and cell) so all are in view.
  fit() {
    const box = new THREE.Box3();
    const p = this.positions;
    if (p) {
      const v = new THREE.Vector3();
      for (let i = 0; i + 2 < p.length; i += 3) box.expandByPoint(v.set(p[i], p[i + 1], p[i + 2]));
    }
    if (this.cell) box.expandByObject(this.cell);
    if (box.isEmpty()) return;
    const center = box.getCenter(new THREE.Vector3());
    const size = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 1) + 1;
    const fov = Math.min(this.camera.fov, this.camera.fov * this.camera.aspect); // the narrower one
    const dist = size / Math.sin((fov * Math.PI) / 360);
    this.controls.target.copy(center);
    this.camera.position.copy(center).add(new THREE.Vector3(0.35, 0.45, 1).normalize().multiplyScalar(dist));
    this.camera.near = Math.max(dist / 1000, 0.01);
    this.camera.far = dist * 20;
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.requestRender();
  }

  // info describes what is drawn, for the page and tests.
  info() {
    const r = this.renderer.info.render;
    return {atoms: this.numbers ? this.numbers.length : 0, detail: this.detail, impostors: this.detail < 0,
      selected: this.halo ? this.halo.count ?? this.halo.mesh.count : 0, cell: !!this.cell, renders: this.renders,
      triangles: r.triangles, calls: r.calls};
  }

  dispose() {
    cancelAnimationFrame(this.pending);
    this.resizeObserver.disconnect();
    this.controls.dispose();
    this.clear();
    for (const m of Object.values(this.materials)) m.dispose();
    this.renderer.dispose();
  }
}

function sameNumbers(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== Number(b[i])) return false;
  return true;
}
