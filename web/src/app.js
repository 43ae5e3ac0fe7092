// placeholder: the room page (being written)
import {version} from "./framesync.js";
console.log("framesync", version);
