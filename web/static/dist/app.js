import{version as o}from"./framesync.js";console.log("framesync",o);
